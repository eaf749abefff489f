"""A thin tokenizer wrapper over a transformers tokenizer (from an HF dir, a GGUF file or an o1jax checkpoint):
encode/decode, chat templates, the set of end-of-sequence ids."""
from __future__ import annotations

from typing import Sequence


class Tokenizer:
    def __init__(self, hf_tokenizer, eos_token_id=None):
        self.hf = hf_tokenizer
        eos = set()
        for e in (eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id]):
            if e is not None:
                eos.add(int(e))
        if hf_tokenizer.eos_token_id is not None:
            eos.add(int(hf_tokenizer.eos_token_id))
        self.eos_token_ids: frozenset[int] = frozenset(eos)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    def eos_token_id(self) -> int | None:
        return self.hf.eos_token_id

    @property
    def pad_token_id(self) -> int:
        p = self.hf.pad_token_id
        return int(p if p is not None else min(self.eos_token_ids) if self.eos_token_ids else 0)

    @property
    def bos_token_id(self) -> int | None:
        return self.hf.bos_token_id

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tokenize: bool = False, **kw):
        out = self.hf.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=tokenize,
                                          **kw)
        if tokenize and hasattr(out, "keys"):  # transformers >= 5 returns a BatchEncoding
            out = out["input_ids"]
        return list(out) if tokenize else out

    def save_pretrained(self, path: str):
        self.hf.save_pretrained(path)

    def __len__(self):
        return self.vocab_size
