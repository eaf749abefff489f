"""Tiny models, tokenizers and data files for tests and smoke runs (no downloads): a byte-level BPE tokenizer
trained on a few sentences, a random LlamaForCausalLM saved as a Hugging Face dir, and sample JSONL rows for
every training stage."""
from __future__ import annotations

import json
import os

CORPUS = ["def add(a, b):\n    return a + b\n", "Write a function that adds two numbers.",
          "# input:\n1 2\n# output:\n3\n", "Step 1: read the input. Step 2: print the sum. Rating + -",
          "the quick brown fox jumps over the lazy dog 0123456789 ()[]{}:=+-*/<>,.'\""]


def tiny_tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_hf_model_dir(path: str, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    """A random Llama (vocab = the tiny tokenizer's) with tokenizer files, as transformers writes it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def sample_rows(kind: str, n: int = 8, prm_kind: str = "pointwise") -> list[dict]:
    rows = []
    for i in range(n):
        a, b = i % 5, (3 * i) % 7
        prompt = f"Write a function that adds {a} and {b}."
        good = f"def add(a, b):\n    return a + b  # {a + b}\n"
        bad = f"def add(a, b):\n    return a - b  # {a - b}\n"
        if kind == "sft":
            rows.append({"prompt": prompt, "response": good})
        elif kind == "dpo":
            rows.append({"prompt": prompt, "chosen": good, "rejected": bad})
        elif kind == "prm" and prm_kind == "pairwise":
            rows.append({"prompt": prompt, "steps": ["Step 1: read the input."], "chosen": "Step 2: print the sum.",
                         "rejected": "Step 2: print 0."})
        elif kind == "prm":
            rows.append({"prompt": prompt, "steps": ["Step 1: read the input.", f"Step 2: print {a}."],
                         "values": [1.0, (i % 3) / 2]})
        elif kind == "ppo":
            rows.append({"prompt": prompt, "tests": {"kind": "call", "fn_name": "add",
                                                     "cases": [{"args": [a, b], "expected": a + b}]}})
    return rows


def subprocess_env(repo: str, **extra) -> dict:
    """Environment for test subprocesses: the repo on PYTHONPATH, CPU JAX, and one persistent compilation cache
    shared by every subprocess (a resumed run, the second of two processes, a rerun of the suite skip compiles)."""
    import tempfile
    cache = os.path.join(tempfile.gettempdir(), f"o1jax-test-jax-cache-{os.getuid()}")
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.update(extra)
    return env


def write_jsonl(path: str, rows: list[dict]) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


# ------------------------------------------------------------------------------------------ sharding equivalence
def tiny_config():
    from o1jax.models.config import ModelConfig
    return ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                       num_kv_heads=2, head_dim=8)


def synthetic_batch(kind: str, B: int = 8, T: int = 16, seed: int = 0, vocab: int = 64) -> dict:
    """A random batch of a stage's fields (what training.data would build), for step equivalence checks."""
    import numpy as np
    rng = np.random.default_rng(seed)
    lead = (B, 2) if kind == "dpo" else (B,)
    inp = rng.integers(0, vocab, (*lead, T)).astype(np.int32)
    lens = rng.integers(T // 2, T + 1, lead)
    seg = (np.arange(T) < lens[..., None]).astype(np.int32)
    b = {"inputs": inp, "targets": np.roll(inp, -1, -1), "segment_ids": seg,
         "positions": (np.arange(T, dtype=np.int32) * seg).astype(np.int32),
         "loss_mask": ((np.arange(T) >= 4) * seg).astype(np.float32)}
    if kind == "prm":
        b["score_mask"] = (rng.random((B, T)) < 0.3).astype(np.float32) * seg
        b["labels"] = rng.random((B, T)).astype(np.float32)
    if kind == "ppo":
        f = lambda: rng.normal(size=(B, T)).astype(np.float32)
        b.update(old_logp=-np.abs(f()) - 3.0, ref_logp=-np.abs(f()) - 3.0, old_values=f(), rewards=f(),
                 advantages=f(), returns=f())
    return b


EQUIVALENCE_CASES = [("sft", False, 2), ("dpo", True, 1), ("prm", False, 1), ("ppo", True, 2)]


def one_step_each_kind(mesh, cases=None) -> dict:
    """For each (kind, lora, micro-batches) case: one SGD step on `mesh` from the same init and batch ->
    {case: (loss, {param: np.ndarray})} gathered to every host."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from o1jax.models.sharding import param_shardings
    from o1jax.models.spec import init_params
    from o1jax.training.config import TrainConfig
    from o1jax.training.mesh import put_batch
    from o1jax.training.state import build_trainer
    cfg = tiny_config()
    base = init_params(cfg, jax.random.key(0), param_shardings(cfg, mesh))
    out = {}
    for kind, use_lora, n_micro in cases or EQUIVALENCE_CASES:
        tc = TrainConfig()
        tc.train.batch_size, tc.train.micro_batch_size = 8, 8 // n_micro
        tc.optim.name, tc.optim.lr = "sgd", 0.5
        tc.lora.enabled, tc.lora.rank, tc.lora.targets = use_lora, 2, ["q", "v", "down"]
        tr = build_trainer(kind, tc, cfg, base, mesh)
        if use_lora:  # non-zero adapters so the LoRA path matters
            tr.state["params"] = {k: v + 0.05 if k.endswith("/b") else v for k, v in tr.state["params"].items()}
        m = tr.step(put_batch(synthetic_batch(kind), mesh))
        params = {k: np.asarray(multihost_utils.process_allgather(v, tiled=True))
                  for k, v in tr.state["params"].items()}
        out[f"{kind}-lora{int(use_lora)}-micro{n_micro}"] = (float(np.asarray(m["loss"])), params)
    return out


# ------------------------------------------------------------------------------------------ scripted policy
def scripted_hf_model_dir(path: str, completion: str, tokenizer, hidden: int = 64, seed: int = 0) -> str:
    """A tiny Llama (random attention and MLP inputs) that greedily answers ANY prompt with `completion` then EOS:
    the attention and MLP outputs (o, down) are zero, so the final hidden state is the current token's embedding,
    and the embedding / LM head form a bigram chain over the completion's tokens (each must occur once, and not as
    a prompt's last token). Lets an end-to-end RL test know what the policy writes without training it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    chain = tokenizer.encode(completion)
    if len(set(chain)) != len(chain) or len(chain) + 1 > hidden:
        raise ValueError(f"{completion!r}: needs distinct tokens, at most {hidden - 1}")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    eye = torch.eye(hidden)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb[:] = eye[0]  # every token not in the chain: "start the completion"
        head = model.lm_head.weight
        head.zero_()
        prev = 0
        for i, t in enumerate(chain, start=1):
            emb[t] = eye[i]
            head[t] = 10.0 * eye[prev]
            prev = i
        head[tokenizer.eos_token_id] = 10.0 * eye[prev]
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
