"""Training data: JSONL rows -> tokenised examples -> fixed-shape numpy batches.

Formats (one JSON object per line):
  sft  {"prompt": str, "response": str}
  dpo  {"prompt": str, "chosen": str, "rejected": str}
  prm  point-wise / generative: {"prompt": str, "steps": [str, ...], "values": [float, ...]}  (v^j per step)
       pair-wise:                {"prompt": str, "steps": [str, ...], "chosen": str, "rejected": str}
                                 (shared prefix steps, then the higher- and the lower-valued next step)
  ppo  {"prompt": str, "tests": <execution-service test spec>, "entry_point"?: str, "starter_code"?: str,
        "id"?: str}  (rollouts are generated, see training.ppo; the entry point defaults to the tests' fn_name /
        entry_point)

The batch of step s is a pure function of (seed, s): the data position restored with a checkpoint is just the step,
which is what makes a resumed run identical to an uninterrupted one. Every process builds the same global batch
and hands its own shards to the devices (training.mesh.put_batch)."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from o1jax.errors import UserError

PAD_MULTIPLE = 64  # batches are padded to a multiple of this (few distinct shapes -> few compilations)


@dataclasses.dataclass
class Example:
    """One training sequence, already shifted: inputs[i] predicts targets[i]. Fields [n] (pairs: [2, n])."""
    fields: dict  # name -> np.ndarray


def _read_jsonl(path: str, required: dict):
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such data file")
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path} line {i}: invalid JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path} line {i}: expected a JSON object, got {type(row).__name__}")
            for key, tp in required.items():
                if key not in row:
                    raise UserError(f"{path} line {i}: missing key {key!r} (expected keys: {', '.join(required)})")
                if tp is not None and not isinstance(row[key], tp):
                    raise UserError(f"{path} line {i}: {key!r} must be {getattr(tp, '__name__', tp)}, "
                                    f"got {type(row[key]).__name__}")
            yield f"{path} line {i}", row


class Encoder:
    """Text -> token ids with the run's prompt conventions (chat template, EOS, truncation)."""

    def __init__(self, tokenizer, data_cfg):
        if tokenizer is None:
            raise UserError("training needs a tokenizer: the model has none (pass an HF dir or o1jax checkpoint "
                            "with tokenizer files)")
        self.tok = tokenizer
        self.d = data_cfg

    def prompt(self, text: str) -> list[int]:
        if self.d.chat_template:
            text = self.tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
        return self.tok.encode(text)

    def text(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def eos(self) -> list[int]:
        e = self.tok.eos_token_id
        return [e] if (self.d.append_eos and e is not None) else []

    def single_token(self, text: str, what: str) -> int:
        ids = self.tok.encode(text)
        if len(ids) != 1:
            raise UserError(f"{what}={text!r} is {len(ids)} tokens for this tokenizer; it must be exactly one")
        return ids[0]


def _fit(prompt: list[int], rest: list[int], max_len: int) -> tuple[list[int], list[int]]:
    """Truncate to max_len + 1 ids (inputs and targets are shifted by one): the prompt loses its head first."""
    over = len(prompt) + len(rest) - (max_len + 1)
    if over > 0:
        cut = min(over, max(len(prompt) - 1, 0))
        prompt = prompt[cut:]
        over -= cut
        if over > 0:
            rest = rest[:len(rest) - over]
    return prompt, rest


def _lm_example(prompt: list[int], response: list[int], max_len: int) -> dict:
    prompt, response = _fit(prompt, response, max_len)
    ids = np.array(prompt + response, np.int32)
    is_resp = np.array([0] * len(prompt) + [1] * len(response), np.float32)
    return {"inputs": ids[:-1], "targets": ids[1:], "loss_mask": is_resp[1:]}


def _scored_example(prompt: list[int], parts: list[list[int]], labels: list[float], max_len: int) -> dict:
    """Scores sit on the last token of each part (a step, or a step + rating tag). Inputs are not shifted: the
    hidden state at a part's last token has read the whole prefix."""
    body = [t for p in parts for t in p]
    prompt, body = _fit(prompt, body, max_len - 1)
    ids = np.array(prompt + body, np.int32)
    n = len(ids)
    score_mask = np.zeros(n, np.float32)
    lab = np.zeros(n, np.float32)
    end = len(prompt)
    for p, v in zip(parts, labels):
        end += len(p)
        if end - 1 < n and p:
            score_mask[end - 1] = 1.0
            lab[end - 1] = v
    return {"inputs": ids, "targets": np.zeros(n, np.int32), "score_mask": score_mask, "labels": lab}


def ppo_problem(row: dict, where: str):
    """A PPO data row -> the o1jax.data.Problem its rollouts are judged on (extract_code + make_job)."""
    from o1jax.data.problem import Problem, check_tests
    tests = row["tests"]
    bad = check_tests(tests)
    if bad:
        raise UserError(f"{where}: 'tests' is not an execution-service test spec ({bad}); see "
                        "o1jax/execution/README.md")
    entry = row.get("entry_point") or tests.get("fn_name") or tests.get("entry_point")
    for key in ("entry_point", "starter_code", "id"):
        if key in row and not isinstance(row[key], str):
            raise UserError(f"{where}: {key!r} must be str, got {type(row[key]).__name__}")
    return Problem(id=row.get("id") or where, source="ppo", question=row["prompt"], tests=tests,
                   entry_point=entry if tests["kind"] != "stdio" else None,
                   starter_code=row.get("starter_code", ""))


def load_examples(kind: str, path: str, tokenizer, tcfg) -> list[dict]:
    """Read and tokenise a JSONL file for stage `kind` (see the module docstring for the formats)."""
    enc = Encoder(tokenizer, tcfg.data)
    d, prm = tcfg.data, tcfg.prm
    out = []
    if kind == "sft":
        for where, r in _read_jsonl(path, {"prompt": str, "response": str}):
            out.append(_lm_example(enc.prompt(r["prompt"]), enc.text(r["response"]) + enc.eos(), d.max_length))
    elif kind == "dpo":
        for where, r in _read_jsonl(path, {"prompt": str, "chosen": str, "rejected": str}):
            p = enc.prompt(r["prompt"])
            pair = [_lm_example(p, enc.text(r[k]) + enc.eos(), d.max_length) for k in ("chosen", "rejected")]
            out.append({"pair": pair})
    elif kind == "prm" and prm.kind == "pairwise":
        for where, r in _read_jsonl(path, {"prompt": str, "steps": list, "chosen": str, "rejected": str}):
            p = enc.prompt(r["prompt"])
            prefix = enc.text("".join(s + d.step_separator for s in r["steps"])) if r["steps"] else []
            pair = []
            for k in ("chosen", "rejected"):
                cand = enc.text(r[k])
                if not cand:
                    raise UserError(f"{where}: {k!r} is empty")
                pair.append(_scored_example(p + prefix, [cand], [0.0], d.max_length))
            out.append({"pair": pair})
    elif kind == "prm":
        tag = enc.text(prm.rating_tag) if prm.kind == "generative" else []
        for where, r in _read_jsonl(path, {"prompt": str, "steps": list, "values": list}):
            steps, values = r["steps"], r["values"]
            if len(steps) != len(values) or not steps:
                raise UserError(f"{where}: 'steps' ({len(steps)}) and 'values' ({len(values)}) must be non-empty "
                                "lists of equal length")
            if not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values):
                raise UserError(f"{where}: 'values' must be numbers in [0, 1]")
            if not all(isinstance(s, str) for s in steps):
                raise UserError(f"{where}: 'steps' must be strings")
            labels = [float(v >= 0.5) if prm.labels == "hard" else float(v) for v in values]
            parts = [enc.text(s + (d.step_separator if i < len(steps) - 1 or not tag else "")) + tag
                     for i, s in enumerate(steps)]
            out.append(_scored_example(enc.prompt(r["prompt"]), parts, labels, d.max_length))
    elif kind == "ppo":
        for where, r in _read_jsonl(path, {"prompt": str, "tests": dict}):
            out.append({"prompt": r["prompt"], "problem": ppo_problem(r, where), "where": where})
    else:
        raise UserError(f"unknown training kind {kind!r}")
    if not out:
        raise UserError(f"{path}: no examples")
    return out


def pack(examples: list[dict], max_len: int) -> list[dict]:
    """Greedy packing in order: several examples per row, separated by segment ids (attention never crosses)."""
    rows, cur, used = [], [], 0
    for ex in examples:
        n = len(ex["inputs"])
        if cur and used + n > max_len:
            rows.append(cur)
            cur, used = [], 0
        cur.append(ex)
        used += n
    if cur:
        rows.append(cur)
    out = []
    for parts in rows:
        row = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        row["segment_ids"] = np.concatenate([np.full(len(p["inputs"]), i + 1, np.int32) for i, p in enumerate(parts)])
        row["positions"] = np.concatenate([np.arange(len(p["inputs"]), dtype=np.int32) for p in parts])
        out.append(row)
    return out


def _pad_rows(rows: list[dict], length: int) -> dict:
    """Right-pad single rows to `length`: padding has segment 0 and no loss/score weight."""
    out = {}
    keys = [k for k in rows[0]]
    for k in keys:
        arr = np.zeros((len(rows), length), rows[0][k].dtype)
        for i, r in enumerate(rows):
            arr[i, :len(r[k])] = r[k]
        out[k] = arr
    n = [len(r["inputs"]) for r in rows]
    if "segment_ids" not in out:
        out["segment_ids"] = (np.arange(length)[None] < np.array(n)[:, None]).astype(np.int32)
    if "positions" not in out:
        out["positions"] = np.tile(np.arange(length, dtype=np.int32), (len(rows), 1)) * out["segment_ids"]
    return out


def collate(examples: list[dict], max_len: int) -> dict:
    """Examples -> a batch of [B, T] (or [B, 2, T] for pairs) arrays, T padded up to a multiple of 64."""
    flat = [r for e in examples for r in (e["pair"] if "pair" in e else [e])]
    longest = max(len(r["inputs"]) for r in flat)
    T = min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, max(max_len, longest))
    b = _pad_rows(flat, T)
    if "pair" in examples[0]:
        b = {k: v.reshape(len(examples), 2, T) for k, v in b.items()}
    return b


class Batches:
    """The deterministic batch stream: step s -> rows [s*B, (s+1)*B) of the concatenated per-epoch permutations."""

    def __init__(self, examples: list[dict], batch_size: int, max_len: int, seed: int, shuffle: bool = True,
                 packed: bool = False):
        self.examples = pack(examples, max_len) if packed else examples
        self.B = batch_size
        self.max_len = max_len
        self.seed = seed
        self.shuffle = shuffle
        self._perm: dict[int, np.ndarray] = {}

    def __len__(self):
        return len(self.examples)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm:
            n = len(self.examples)
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                          else np.arange(n)}
        return self._perm[epoch]

    def indices(self, step: int) -> list[int]:
        n = len(self.examples)
        out = []
        for pos in range(step * self.B, (step + 1) * self.B):
            out.append(int(self._order(pos // n)[pos % n]))
        return out

    def batch(self, step: int) -> dict:
        return collate([self.examples[i] for i in self.indices(step)], self.max_len)

    def position(self, step: int) -> dict:
        """What a checkpoint records as the data position after `step` steps."""
        n = len(self.examples)
        return {"examples_seen": step * self.B, "epoch": (step * self.B) // n, "num_examples": n}
