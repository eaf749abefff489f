"""The sampler: cached greedy decoding is exact, sampling follows the filtered distribution, seeds reproduce, shared
prefixes change nothing, stop strings are found across token boundaries, and SmolLM2 matches transformers."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import jax

import o1jax
from o1jax.errors import UserError
from o1jax.facade import LanguageModel
from o1jax.models.config import ModelConfig
from o1jax.models.spec import init_params
from o1jax.sampling import Sampler, bucket
from o1jax.sampling.stops import MATCHED, stop_table, truncate_at_stop


def tiny_lm(vocab=64, logit_scale=1.0, seed=0):
    cfg = ModelConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=8, eos_token_id=None, max_position_embeddings=512)
    params = init_params(cfg, jax.random.key(seed))
    params["lm_head"] = params["lm_head"] * logit_scale  # random init gives near-uniform logits; sharpen them
    params["layers/attn_norm"] = params["layers/attn_norm"] + 0.3 * jax.random.normal(jax.random.key(7), (2, 32))
    return LanguageModel(cfg, params, tokenizer=None)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(logit_scale=30.0)


MIXED = [[1, 2, 3], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], [4], [9, 9, 8, 7]]


def full_forward_greedy(lm, prompt, steps, width=48):
    """Argmax of a full forward pass (no cache) per step; right-padded to one width (causal: padding after the
    last token cannot change its logits), so this compiles once."""
    ids = list(prompt)
    for _ in range(steps):
        buf = np.zeros((1, width), np.int32)
        buf[0, :len(ids)] = ids
        ids.append(int(np.argmax(np.asarray(lm.logits(buf))[0, len(ids) - 1])))
    return ids[len(prompt):]


@pytest.mark.parametrize("step_fn", ["fast", "reference"])
def test_greedy_with_cache_equals_argmax_of_full_forward_passes(lm, step_fn):
    out = Sampler(lm, step_fn=step_fn).generate(MIXED, max_new_tokens=20)
    for prompt, (c,) in zip(MIXED, out):
        assert c.token_ids == full_forward_greedy(lm, prompt, 20)
        assert c.finish_reason == "length"
        # logprobs are log_softmax of the model's logits at each step
        seq = prompt + c.token_ids
        ref = jax.nn.log_softmax(np.asarray(lm.logits([seq]))[0, len(prompt) - 1:-1], axis=-1)
        np.testing.assert_allclose(c.logprobs, ref[np.arange(20), c.token_ids], atol=2e-5)


def test_same_seed_same_output_and_batching_does_not_change_samples(lm):
    s = Sampler(lm)
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=0.9, n=3)
    a = s.generate(MIXED, seed=5, **kw)
    b = s.generate(MIXED, seed=5, **kw)
    assert [[c.token_ids for c in p] for p in a] == [[c.token_ids for c in p] for p in b]
    c = s.generate(MIXED, seed=6, **kw)
    assert [[x.token_ids for x in p] for p in a] != [[x.token_ids for x in p] for p in c]
    # a prompt's samples are keyed by (seed, prompt index, sample index), not by what else is in the batch
    alone = s.generate(MIXED[:1], seed=5, **kw)
    assert [x.token_ids for x in alone[0]] == [x.token_ids for x in a[0]]
    small = Sampler(lm, max_batch=2).generate(MIXED, seed=5, **kw)  # chunked into batches of 2 rows
    assert [[x.token_ids for x in p] for p in small] == [[x.token_ids for x in p] for p in a]


def test_shared_prefix_gives_the_same_samples_as_prefilling_each_copy(lm):
    s = Sampler(lm)
    kw = dict(max_new_tokens=16, temperature=0.9, top_p=0.95, top_k=20, n=4, seed=3)
    shared = s.generate(MIXED[:2], share_prefix=True, **kw)
    separate = s.generate(MIXED[:2], share_prefix=False, **kw)
    for ps, pp in zip(shared, separate):
        for a, b in zip(ps, pp):
            assert a.token_ids == b.token_ids
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_dropping_finished_rows_does_not_change_any_sample():
    model = tiny_lm(logit_scale=30.0, seed=2)
    model.cfg.eos_token_id = list(range(0, 64, 16))  # rows end on EOS at different steps
    kw = dict(max_new_tokens=80, temperature=1.0, n=6, seed=4)
    whole = Sampler(model, segment_steps=1000).generate(MIXED, **kw)
    seg = Sampler(model, segment_steps=3)
    compacted = seg.generate(MIXED, **kw)
    assert any(name == "compact" for name, _ in seg._seen), "no batch was ever compacted"
    reasons = {c.finish_reason for p in whole for c in p}
    assert reasons == {"eos", "length"}, reasons
    for pw, pc in zip(whole, compacted):
        for a, b in zip(pw, pc):
            assert (a.token_ids, a.finish_reason) == (b.token_ids, b.finish_reason)
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
            if a.finish_reason == "eos":
                assert a.token_ids[-1] % 16 == 0 and all(t % 16 for t in a.token_ids[:-1])


def test_cache_growing_between_segments_changes_nothing(lm):
    """The decode cache starts short and grows between segments (attention reads only about the filled prefix):
    greedy tokens still equal full forward passes, and samples do not depend on the segment length."""
    grower = Sampler(lm, segment_steps=7)
    out = grower.generate(MIXED[:2], max_new_tokens=70)
    assert sum(name == "grow" for name, _ in grower._seen) >= 2, grower._seen
    for prompt, (c,) in zip(MIXED[:2], out):
        assert c.token_ids == full_forward_greedy(lm, prompt, 70, width=96)
    kw = dict(max_new_tokens=70, temperature=1.0, top_p=0.9, n=2, seed=9)
    a = grower.generate(MIXED, **kw)
    b = Sampler(lm, segment_steps=1000).generate(MIXED, **kw)
    for pa, pb in zip(a, b):
        for x, y in zip(pa, pb):
            assert x.token_ids == y.token_ids
            np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-5)


def test_a_long_shared_prompt_prefix_is_prefilled_once_and_changes_nothing(lm, monkeypatch):
    """Prompts that share a long prefix (an instruction prompt) prefill it once, in a memo kept across requests;
    greedy tokens still equal full forward passes, and samples equal those of prefilling every prompt whole."""
    import o1jax.sampling.sampler as sampler_mod
    rng = np.random.default_rng(0)
    common = [int(t) for t in rng.integers(1, 64, 150)]
    prompts = [common + [int(t) for t in rng.integers(1, 64, k)] for k in (1, 9, 30)]
    s = Sampler(lm, segment_steps=8)
    out = s.generate(prompts, max_new_tokens=20)
    assert ("prefill", (1, 128, 0)) in s._seen  # 150 shared tokens -> two 64-token blocks
    assert any(name == "decode" and key[-1] == 128 for name, key in s._seen)  # decoded against its one copy
    for prompt, (c,) in zip(prompts, out):
        assert c.token_ids == full_forward_greedy(lm, prompt, 20, width=208)
    kw = dict(max_new_tokens=20, temperature=1.0, top_p=0.9, n=3, seed=5)
    with_prefix = s.generate(prompts, **kw)
    assert len([k for k in s._seen if k[0] == "prefill" and k[1][0] == 1]) == 1  # the memo served the second call
    monkeypatch.setattr(sampler_mod, "MIN_PREFIX", 10 ** 9)
    whole = Sampler(lm, segment_steps=8).generate(prompts, **kw)
    for pa, pb in zip(with_prefix, whole):
        for x, y in zip(pa, pb):
            assert x.token_ids == y.token_ids
            np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-4)


def expected_distribution(logits, temperature, top_p, top_k):
    """transformers' warper order: temperature, top-k, top-p (keep while the mass ahead < top_p), in float64."""
    z = np.asarray(logits, np.float64) / temperature
    order = np.argsort(-z, kind="stable")
    keep = np.zeros_like(z, bool)
    cand = order[:top_k] if top_k else order
    p = np.exp(z[cand] - z[cand].max())
    p /= p.sum()
    ahead = np.cumsum(p) - p
    keep[cand[(ahead < top_p) | (np.arange(len(cand)) == 0)]] = True
    q = np.where(keep, np.exp(z - z.max()), 0.0)
    return q / q.sum()


@pytest.mark.parametrize("vocab,scale,temperature,top_p,top_k", [
    (64, 30.0, 0.7, 0.8, 0),  # nucleus among the top candidates (the fast path)
    (256, 3.0, 1.0, 0.9, 0),  # nucleus larger than the candidate set: the exact whole-vocabulary search
    (64, 30.0, 1.3, 1.0, 0),  # plain temperature sampling over the whole vocabulary
    (64, 30.0, 1.0, 0.9, 6),  # top-k, then top-p of the renormalised top-k
])
def test_sampled_tokens_follow_the_filtered_distribution(vocab, scale, temperature, top_p, top_k):
    model = tiny_lm(vocab, scale, seed=1)
    prompt = [3, 1, 4, 1, 5]
    n = 6000
    out = Sampler(model, max_batch=2048).generate([prompt], max_new_tokens=1, temperature=temperature,
                                                 top_p=top_p, top_k=top_k, n=n, seed=11)
    counts = np.bincount([c.token_ids[0] for c in out[0]], minlength=vocab)
    p = expected_distribution(np.asarray(model.logits([prompt]))[0, -1], temperature, top_p, top_k)
    assert counts[p == 0].sum() == 0, "a filtered-out token was sampled"
    support = p > 0
    assert 3 <= support.sum() < vocab or top_p == 1.0
    exp = n * p[support]
    obs = counts[support]
    big = exp >= 5  # pool the rare tokens into one bin so the chi-square approximation holds
    obs_b = np.append(obs[big], obs[~big].sum())
    exp_b = np.append(exp[big], exp[~big].sum())
    if exp_b[-1] == 0:
        obs_b, exp_b = obs_b[:-1], exp_b[:-1]
    stat, pval = scipy.stats.chisquare(obs_b, exp_b)
    assert pval > 1e-3, (stat, pval, len(obs_b))


def test_rows_with_small_and_large_nuclei_in_one_batch_each_follow_their_distribution():
    """A batch where half the rows have a nucleus inside the candidate set and half need the exact whole-vocabulary
    search (more of them than one fallback pass holds): every row follows its own filtered distribution."""
    from o1jax.sampling.filters import FALLBACK_ROWS, NUCLEUS_CANDIDATES, sample_tokens
    B, V, n, top_p, temperature = 2 * FALLBACK_ROWS + 6, 512, 2500, 0.9, 0.8
    scale = np.where(np.arange(B) % 2 == 0, 30.0, 0.5)[:, None]  # even rows peaked, odd rows nearly flat
    logits = jax.numpy.asarray(np.random.default_rng(3).normal(size=(B, V)) * scale, jax.numpy.float32)
    expected = [expected_distribution(np.asarray(logits[b]), temperature, top_p, 0) for b in range(B)]
    assert sum((p > 0).sum() > NUCLEUS_CANDIDATES for p in expected) > FALLBACK_ROWS  # several fallback passes
    draw = jax.jit(lambda u: sample_tokens(logits, u, jax.numpy.float32(temperature), jax.numpy.float32(top_p),
                                           0, False)[0])
    us = jax.random.uniform(jax.random.key(5), (n, B))
    toks = np.stack([np.asarray(draw(us[i])) for i in range(n)])  # [n, B]
    stat = dof = 0
    for b in range(B):
        counts = np.bincount(toks[:, b], minlength=V)
        p = expected[b]
        assert counts[p == 0].sum() == 0, f"row {b}: a filtered-out token was sampled"
        exp, obs = n * p[p > 0], counts[p > 0]
        big = exp >= 5
        obs_b, exp_b = np.append(obs[big], obs[~big].sum()), np.append(exp[big], exp[~big].sum())
        keep = exp_b > 0
        stat += float(np.sum((obs_b[keep] - exp_b[keep]) ** 2 / exp_b[keep]))
        dof += int(keep.sum()) - 1
    assert scipy.stats.chi2.sf(stat, dof) > 1e-3, (stat, dof)


def test_a_wrong_distribution_fails_the_chi_square_test():
    """The statistical test has power: sampling at temperature 1.0 is rejected against temperature 0.7."""
    model = tiny_lm(64, 30.0, seed=1)
    out = Sampler(model, max_batch=2048).generate([[3, 1, 4, 1, 5]], max_new_tokens=1, temperature=1.0, n=6000,
                                                 seed=11)
    counts = np.bincount([c.token_ids[0] for c in out[0]], minlength=64)
    p = expected_distribution(np.asarray(model.logits([[3, 1, 4, 1, 5]]))[0, -1], 0.7, 1.0, 0)
    big = 6000 * p >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(6000 * p[big], 6000 * p[~big].sum())
    assert scipy.stats.chisquare(obs, exp * obs.sum() / exp.sum())[1] < 1e-6


def test_varying_request_sizes_compile_a_bounded_number_of_programs(lm):
    s = Sampler(lm)
    rng = np.random.default_rng(0)
    raw, buckets = set(), set()
    for _ in range(30):
        prompts = [list(rng.integers(0, 64, rng.integers(1, 17))) for _ in range(rng.integers(1, 5))]
        new = int(rng.integers(1, 25))
        s.generate(prompts, max_new_tokens=new)
        raw.add((len(prompts), max(map(len, prompts)), new))
        buckets.add((bucket(len(prompts)), bucket(max(map(len, prompts)), 16), bucket(new, 16)))
    assert len(raw) >= 25 and len(buckets) <= 8  # batch {1, 2, 3, 4} x prompt {16} x new tokens {16, 24}
    assert s._segment._cache_size() == len(buckets)
    assert s._prefill._cache_size() <= len(buckets)
    assert bucket(100, 16) == 128 and bucket(130, 16) == 192 and bucket(17) == 24 and bucket(1) == 1


def test_user_errors_are_one_line(lm):
    s = Sampler(lm)
    with pytest.raises(UserError, match="max_new_tokens"):
        s.generate([[1]], max_new_tokens=0)
    with pytest.raises(UserError, match="top_p"):
        s.generate([[1]], top_p=0.0)
    with pytest.raises(UserError, match="no tokenizer"):
        s.generate(["text"])
    with pytest.raises(UserError, match="max_position_embeddings"):
        s.generate([[1] * 500], max_new_tokens=20)


# ----------------------------------------------------------------------------------------- stop strings
def test_stop_automaton_matches_across_token_boundaries():
    toks = [b"foo<St", b"ep", b"_End>bar", b"```", b"\n", b"x``", b"`"]
    t = stop_table(["<Step_End>", "\n```"], toks)

    def run(seq):
        s = 0
        for i, tok in enumerate(seq):
            s = t[s, tok]
            if s == MATCHED:
                return i
        return None
    assert run([0, 1, 2]) == 2  # "foo<St" "ep" "_End>bar": the stop string spans three tokens
    assert run([0, 2]) is None  # "foo<St_End>bar" is not a stop
    assert run([3, 4, 3]) == 2  # "```\n```"
    assert run([5, 6]) is None  # "x```" without the newline
    assert truncate_at_stop("a<Step_End>b<Step_End>", ["<Step_End>"]) == "a<Step_End>"


def test_stop_sequences_match_the_earliest_completion_like_a_text_search():
    """Byte automaton against str.find on random texts: strings and ordered sequences of strings, overlapping
    alphabets (so failure links and the restart after each string of a sequence matter)."""
    import random

    from o1jax.sampling.stops import _automaton, _end_of
    rng = random.Random(0)
    alpha = "ab`\n"
    for _ in range(3000):
        pats = [tuple("".join(rng.choice(alpha) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3)))
                for _ in range(rng.randint(1, 3))]
        text = "".join(rng.choice(alpha) for _ in range(rng.randint(0, 30)))
        goto, accept = _automaton([tuple(x.encode() for x in p) for p in pats])
        s, got = 0, None
        for i, b in enumerate(text.encode()):
            s = goto[s, b]
            if accept[s]:
                got = i + 1
                break
        ends = [e for p in pats if (e := _end_of(text, p)) is not None]
        assert got == (min(ends) if ends else None), (pats, text)


def test_stop_sequence_ends_at_the_python_block_not_the_pseudocode_block():
    toks = [b"```pseudo\nx\n", b"```\n<Step_End>", b"```py", b"thon\nprint(1)\n`", b"``", b"\n"]
    t = stop_table([("```python", "\n```")], toks)
    s, hit = 0, None
    for i, tok in enumerate([0, 1, 2, 3, 4, 5]):
        s = t[s, tok]
        if s == MATCHED:
            hit = i
            break
    assert hit == 4  # not at token 1 (a pseudocode fence), at the fence that closes the python block
    text = "```pseudo\nx\n```\n<Step_End>```python\nprint(1)\n```\n<Step_End>"
    assert truncate_at_stop(text, [("```python", "\n```")]) == text[:text.index("print(1)\n```") + 12]
    assert truncate_at_stop("```python\nx", [("```python", "\n```")]) is None


@pytest.fixture(scope="module")
def smollm2():
    return o1jax.load_model("smollm2-135m-instruct")


def test_stop_string_spanning_tokens_ends_the_text_at_the_stop_string(smollm2):
    s = Sampler(smollm2)
    prompt = "Write a Python function that adds two numbers."
    (free,), = s.generate([prompt], max_new_tokens=24, chat=True)
    pieces = [smollm2.tokenizer.decode([t]) for t in free.token_ids]
    # a stop string made of the end of token 5 and the start of token 6 (both at least 2 characters)
    k = next(i for i in range(4, len(pieces) - 1) if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 2)
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    prefix_text = "".join(pieces[:k + 2])
    (c,), = s.generate([prompt], max_new_tokens=24, chat=True, stop=["never appears", stop])
    assert c.finish_reason == "stop"
    assert c.token_ids == free.token_ids[:len(c.token_ids)]
    assert len(c.token_ids) <= k + 2
    assert c.text.endswith(stop)
    assert c.text == prefix_text[:prefix_text.find(stop) + len(stop)]
    assert len(c.logprobs) == len(c.token_ids)


def test_smollm2_greedy_matches_transformers_generate(smollm2):
    import torch
    from transformers import AutoModelForCausalLM

    from o1jax.assets import smollm2_gguf
    import os
    g = smollm2_gguf()
    hf = AutoModelForCausalLM.from_pretrained(os.path.dirname(g), gguf_file=os.path.basename(g),
                                              dtype=torch.float32).eval()
    tok = smollm2.tokenizer
    texts = ["What is the capital of France?", "Write a haiku about binary search trees and their balance.",
             "def fibonacci(n):"]
    prompts = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=True) for t in texts[:2]]
    prompts.append(tok.encode(texts[2]))
    out = smollm2.generate(prompts, max_new_tokens=64)
    for p, (c,) in zip(prompts, out):
        with torch.no_grad():
            ref = hf.generate(torch.tensor([p]), max_new_tokens=64, do_sample=False,
                              pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        assert c.token_ids == ref, (c.text, tok.decode(ref))
        if c.finish_reason == "eos":
            assert c.token_ids[-1] in tok.eos_token_ids and "<|im_end|>" not in c.text
        else:
            assert c.finish_reason == "length" and len(c.token_ids) == 64
        assert c.text == tok.decode(c.token_ids[:-1] if c.finish_reason == "eos" else c.token_ids)
