"""Evaluation of a policy on code problems (the small-scale counterpart of the paper's Table 1): sample n
completions per problem with vanilla or pseudocode ("think before acting") prompting, run the extracted code in the
execution service, and report Pass@k and ASPR.

Generation and execution overlap: each generated batch goes to the execution service (futures) while the next batch
generates on the accelerator.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Literal

from tqdm import tqdm

from o1jax.data import (PATH_END, extract_code, format_path, is_terminal_step, make_job, parse_path,
                        pseudocode_messages, vanilla_messages)
from o1jax.errors import UserError
from o1jax.evaluation.metrics import summarize


@dataclasses.dataclass
class EvalConfig:
    prompting: Literal["vanilla", "pseudocode"] = "vanilla"
    n: int = 10
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    max_new_tokens: int = 512  # vanilla: the whole answer
    max_path_tokens: int = 1024  # pseudocode: the whole reasoning path, code included
    max_steps: int = 6  # pseudocode: the paper's MCTS depth 5 to 10; a path without code by then gets R = 0
    batch_problems: int = 4  # problems per generation batch (x n samples)
    seed: int = 0
    timeout_s: float = 2.0
    memory_mb: int = 1024
    ks: tuple[int, ...] = (1, 5, 10)


@dataclasses.dataclass
class Sample:
    problem_id: str
    sample: int
    completion: str
    steps: list[str]
    code: str | None
    tokens: int
    job: dict | None = None
    result: dict | None = None


def _chat_prompt(tok, messages: list[dict]) -> str:
    """Apply the chat template; a trailing assistant message is a prefill continued by the model."""
    if messages[-1]["role"] == "assistant":
        return tok.apply_chat_template(messages, add_generation_prompt=False, continue_final_message=True)
    return tok.apply_chat_template(messages, add_generation_prompt=True)


def _vanilla(lm, problems, cfg: EvalConfig, seed: int) -> list[list[Sample]]:
    prompts = [_chat_prompt(lm.tokenizer, vanilla_messages(p)) for p in problems]
    outs = lm.generate(prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                       top_k=cfg.top_k, n=cfg.n, stop=["\n```\n"], seed=seed)
    res = []
    for p, comps in zip(problems, outs):
        res.append([Sample(p.id, i, c.text, [], extract_code(c.text, p.entry_point, p.starter_code),
                           len(c.token_ids)) for i, c in enumerate(comps)])
    return res


def _pseudocode(lm, problems, cfg: EvalConfig, seed: int) -> list[list[Sample]]:
    """Each path is generated in one go from the Fig. 4 prompt (the prefix of step 1 prefilled), stopped once its
    python block closes (PATH_END); its steps are then read back. A path whose python block comes after step
    `max_steps`, or never comes, has no code (R = 0). One prefill per prompt, shared by its n samples, and the long
    shared instruction prefix prefilled once for the whole eval."""
    prompts = [_chat_prompt(lm.tokenizer, pseudocode_messages(p)) for p in problems]
    outs = lm.generate(prompts, max_new_tokens=cfg.max_path_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                       top_k=cfg.top_k, n=cfg.n, stop=list(PATH_END), seed=seed)
    res = []
    for p, comps in zip(problems, outs):
        row = []
        for i, c in enumerate(comps):
            steps, ended = parse_path(c.text)
            steps = steps[:cfg.max_steps]  # a python step past max_steps is cut away with the steps before it
            final = steps[-1] if ended and is_terminal_step(steps[-1]) else None
            code = extract_code(final, p.entry_point, p.starter_code) if final else None
            row.append(Sample(p.id, i, format_path(steps), steps, code, len(c.token_ids)))
        res.append(row)
    return res


PARTIAL = "samples.partial.jsonl"  # finished batches of a run in progress, one JSON line each (see evaluate)


def evaluate(lm, problems, cfg: EvalConfig, service, out_dir: str | None = None, progress: bool = True,
             resume: bool = False) -> dict:
    """Run the evaluation; returns the summary dict (and writes samples.jsonl / summary.json / pass_at_k.png).

    With out_dir, nothing is lost on a crash: each batch is appended to DIR/samples.partial.jsonl once its code has
    run (after a header line: the settings and the problem ids). resume=True continues such a run, skipping the
    batches it holds; every batch keeps its seed, so the samples equal an uninterrupted run's. The partial file is
    removed once the final outputs are written."""
    t0 = time.time()
    header = json.loads(json.dumps({"config": dataclasses.asdict(cfg), "problems": [p.id for p in problems]}))
    partial = os.path.join(out_dir, PARTIAL) if out_dir else None
    done, past_gen, past_wall = _load_partial(partial, header, resume) if partial else ({}, 0.0, 0.0)
    if partial and not done:
        os.makedirs(out_dir, exist_ok=True)
        with open(partial, "w") as f:
            f.write(json.dumps(header) + "\n")
    gen_time, new_tokens = 0.0, 0
    pending: list[tuple[int, float, list[list[Sample]], list]] = []  # (batch start, gen s, samples, futures)
    records: dict[int, list[list[dict]]] = dict(done)  # batch start -> per problem, per sample: its output line
    starts = list(range(0, len(problems), cfg.batch_problems))
    bar = tqdm(total=len(problems), desc=f"eval {cfg.prompting}", unit="problem", disable=not progress)
    bar.update(sum(len(rows) for rows in done.values()))

    def flush(block: bool):
        """Collect finished batches' results, oldest first (all of them when block), and append them to the file."""
        while pending and (block or all(f.done() for f in pending[0][3])):
            b, g, rows, futs = pending.pop(0)
            it = iter(futs)
            for row in rows:
                for s in row:
                    s.result = next(it).result() if s.code else {"status": "no_code", "passed": 0, "total": 0}
            records[b] = [[_output_line(s) for s in row] for row in rows]
            if partial:
                with open(partial, "a") as f:
                    f.write(json.dumps({"batch": b, "gen_s": round(g, 3), "rows": records[b],
                                        "wall_s": round(past_wall + time.time() - t0, 2)}) + "\n")

    try:
        for b in starts:
            if b in done:
                continue
            chunk = problems[b:b + cfg.batch_problems]
            tg = time.time()
            gen = (_vanilla if cfg.prompting == "vanilla" else _pseudocode)(lm, chunk, cfg, cfg.seed + b)
            g = time.time() - tg
            gen_time += g
            futs = []
            for p, row in zip(chunk, gen):
                for s in row:
                    new_tokens += s.tokens
                    s.job = make_job(p, s.code or "", job_id=f"{p.id}#{s.sample}", timeout_s=cfg.timeout_s,
                                     memory_mb=cfg.memory_mb)
                # a sample without extractable code fails without running; the rest execute while we generate
                futs += service.submit([s.job for s in row if s.code])
            pending.append((b, g, gen, futs))
            flush(block=False)
            bar.update(len(chunk))
            bar.set_postfix(tok_s=f"{new_tokens / max(gen_time, 1e-9):.0f}")
    except BaseException:  # generation failed or was interrupted: keep every batch already generated
        flush(block=True)
        raise
    finally:
        bar.close()
    flush(block=True)
    rows = [row for b in starts for row in records[b]]
    num_correct = [sum(r["passed"] for r in row) for row in rows]
    ks = tuple(sorted({k for k in cfg.ks if k <= cfg.n} | {cfg.n}))  # pass@n too: the solved fraction
    summary = summarize(cfg.n, num_correct, ks)
    tokens = sum(r["tokens"] for row in rows for r in row)
    gen_all = past_gen + gen_time
    summary.update(n=cfg.n, prompting=cfg.prompting, temperature=cfg.temperature,
                   wall_s=round(past_wall + time.time() - t0, 2), generation_s=round(gen_all, 2), tokens=tokens,
                   tokens_per_s=round(tokens / max(gen_all, 1e-9), 1),
                   no_code=sum(r["status"] == "no_code" for row in rows for r in row))
    if done:
        summary["resumed_problems"] = sum(len(r) for r in done.values())
    if out_dir:
        write_outputs(out_dir, rows, summary, ks)
        os.remove(partial)
    return summary


def _load_partial(path: str, header: dict, resume: bool) -> tuple[dict, float, float]:
    """The finished batches of an interrupted run in DIR -> ({batch start: rows}, generation s, wall s). Such a run
    is never overwritten silently: without resume it is an error; with resume its settings and problems must be
    these."""
    if not os.path.exists(path):
        return {}, 0.0, 0.0
    with open(path) as f:
        lines = f.read().splitlines()
    try:
        head = json.loads(lines[0]) if lines else None
    except ValueError:
        head = None
    batches = []
    for line in lines[1:]:
        try:
            batches.append(json.loads(line))
        except ValueError:  # the line being written when the run died
            break
    if not resume:
        n = sum(len(b["rows"]) for b in batches)
        raise UserError(f"{path}: an interrupted eval is there ({n} of {len(header['problems'])} problems done); "
                        "add --resume to continue it, or remove the file to start over")
    if not isinstance(head, dict):
        raise UserError(f"{path}: no readable header line; remove the file to start over")
    if head.get("config") != header["config"]:
        old = head.get("config") or {}
        diff = next((f"eval.{k} = {old.get(k)!r} there, {v!r} now" for k, v in header["config"].items()
                     if old.get(k) != v), "config")
        raise UserError(f"{path}: written by an eval with other settings ({diff}); resume with the same command "
                        "and overrides, or use another --out")
    if head.get("problems") != header["problems"]:
        raise UserError(f"{path}: written for other problems (dataset, split or --limit differ); resume with the "
                        "same command, or use another --out")
    return ({b["batch"]: b["rows"] for b in batches}, sum(b["gen_s"] for b in batches),
            max((b["wall_s"] for b in batches), default=0.0))


def _output_line(s: Sample) -> dict:
    """One line of samples.jsonl."""
    r = s.result or {}
    return {"problem_id": s.problem_id, "sample": s.sample, "completion": s.completion,
            "code": s.job["program"] if s.job and s.code else (s.code or ""),
            "passed": r.get("status") == "passed", "status": r.get("status"),
            "tests_passed": r.get("passed", 0), "tests_total": r.get("total", 0),
            "error": _first_error(r), "steps": s.steps, "tokens": s.tokens}


def write_outputs(out_dir: str, rows: list[list[dict]], summary: dict, ks):
    """samples.jsonl (the lines of `_output_line`, in problem order), summary.json and pass_at_k.png."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "samples.jsonl"), "w") as f:
        for row in rows:
            for r in row:
                f.write(json.dumps(r) + "\n")
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    plot_pass_at_k(os.path.join(out_dir, "pass_at_k.png"), summary, ks)


def _first_error(result: dict) -> str | None:
    """What the execution service said about the first case that did not pass (None when all passed)."""
    if result.get("status") == "passed":
        return None
    if result.get("status") == "no_code":
        return "no python code block to extract"
    case = next((c for c in result.get("cases", ()) if not c.get("passed")), None)
    return (case or {}).get("error") or result.get("error") or result.get("status")


def plot_pass_at_k(path: str, summary: dict, ks):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = [k for k in ks if f"pass@{k}" in summary]
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ys = [100 * summary[f"pass@{k}"] for k in xs]
    ax.plot(xs, ys, marker="o")
    for x, y in zip(xs, ys):
        ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_ylim(0, min(100, max(5.0, 1.2 * max(ys, default=0))))
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(k) for k in xs])
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(f"{summary.get('prompting')} prompting, n={summary.get('n')}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(summary: dict) -> str:
    keys = [k for k in summary if k.startswith("pass@")] + ["aspr", "solved"]
    head = " | ".join(f"{k:>8}" for k in keys)
    vals = " | ".join(f"{100 * summary[k]:7.1f}%" for k in keys)
    extra = (f"problems={summary['problems']} n={summary['n']} prompting={summary['prompting']} "
             f"wall={summary['wall_s']}s tokens/s={summary['tokens_per_s']} no_code={summary['no_code']}")
    return f"{head}\n{vals}\n{extra}"
