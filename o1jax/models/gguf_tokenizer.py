"""The tokenizer embedded in a GGUF file (llama.cpp's `tokenizer.ggml.*` metadata), rebuilt with the `tokenizers`
library: byte-level BPE (`tokenizer.ggml.model = gpt2`: SmolLM2, Qwen2, Llama 3, DeepSeek-Coder). It matches what
transformers builds from the same file (tests/test_gguf.py compares them), without transformers' GGUF reader, which
imports torch: o1jax installs no torch.
"""
from __future__ import annotations

from o1jax.errors import UserError

# Pre-tokenizer splits by `tokenizer.ggml.pre`, as llama.cpp and transformers use them; others: GPT-2's byte-level
# regex.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZER_SPLITS = {"llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT,
                        "smaug-bpe": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}
CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def gguf_tokenizer(path: str, reader=None):
    """A transformers PreTrainedTokenizerFast for the tokenizer stored in the GGUF file at `path`."""
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    r = reader or gguf.GGUFReader(path)
    kind = _field(r, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise UserError(f"{path}: GGUF tokenizer type {kind!r} is not supported (byte-level BPE 'gpt2' is); "
                        "convert the model from its Hugging Face directory instead")
    tokens = _field(r, "tokenizer.ggml.tokens")
    merges = _field(r, "tokenizer.ggml.merges") or []
    types = _field(r, "tokenizer.ggml.token_type") or [1] * len(tokens)
    spelling = bytes_to_unicode()
    alphabet = set(spelling.values())
    vocab = {}
    for i, tok in enumerate(tokens):
        key = tok if set(tok) <= alphabet else "".join(spelling[b] for b in tok.encode("utf-8"))
        vocab.setdefault(key, i)
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], dropout=None,
                     continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    tk = Tokenizer(bpe)
    split = PRE_TOKENIZER_SPLITS.get(_field(r, "tokenizer.ggml.pre"))
    if split is None:
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                             use_regex=False)])
    tk.decoder = decoders.ByteLevel()

    def tok_of(key):
        i = _field(r, f"tokenizer.ggml.{key}")
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    hf = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=tok_of("bos_token_id"),
                                 eos_token=tok_of("eos_token_id"), unk_token=tok_of("unknown_token_id"),
                                 pad_token=tok_of("padding_token_id"),
                                 chat_template=_field(r, "tokenizer.chat_template"))
    # Control tokens (<|im_start|> ...) stay whole and are special; user-defined ones stay whole but are text.
    control = [AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types)
               if ty == CONTROL and set(t) <= alphabet]
    if control:
        hf.add_special_tokens({"additional_special_tokens": control})
    user = [AddedToken(t, normalized=False, special=False) for t, ty in zip(tokens, types) if ty == USER_DEFINED]
    if user:
        hf.add_tokens(user)
    return hf
