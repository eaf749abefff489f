"""Evaluation metrics of the paper's Table 1: Pass@k (unbiased estimator of Chen et al., 2021) and ASPR (average
sampling pass rate). Inputs are per-problem sample counts, so they work for any sampler (vanilla, pseudocode, MCTS)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct:
    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms huge binomials."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(num_samples: Sequence[int] | int, num_correct: Sequence[int], k: int) -> float:
    """Pass@k averaged over problems; `num_samples` is one n for all problems or one per problem."""
    cs = list(num_correct)
    ns = [num_samples] * len(cs) if isinstance(num_samples, int) else list(num_samples)
    if len(ns) != len(cs):
        raise ValueError(f"{len(ns)} sample counts for {len(cs)} problems")
    if not cs:
        return 0.0
    return float(np.mean([pass_at_k(n, c, k) for n, c in zip(ns, cs)]))


def aspr(num_samples: Sequence[int] | int, num_correct: Sequence[int]) -> float:
    """Average Sampling Pass Rate.

    The paper: "the average sampling pass rate of the last (code) step on correct reasoning paths". In MCTS, the
    final code step is sampled several times from a reasoning prefix, and ASPR is the fraction of those samples
    that pass, averaged over prefixes that are on a correct path (i.e. from which some sample passes).

    Our single-pass setting (n independent samples per problem, each a full reasoning path ending in code) has no
    shared prefix, so we condition on the problem instead: over the problems with at least one passing sample
    (c_i >= 1; the problems where a correct reasoning path exists), ASPR = mean_i c_i / n_i, where a sample
    passes when its final code passes all tests. It measures how reliably the model reaches correct code once the
    problem is within its reach, which is what the paper uses it for (pseudocode raises ASPR while it can lower
    Pass@1). Problems with no correct sample are excluded, as paths with no correct continuation are in the paper;
    0.0 when no problem has a correct sample. Report `solved_fraction` alongside it.
    """
    cs = list(num_correct)
    ns = [num_samples] * len(cs) if isinstance(num_samples, int) else list(num_samples)
    if len(ns) != len(cs):
        raise ValueError(f"{len(ns)} sample counts for {len(cs)} problems")
    if any(not 0 <= c <= n for n, c in zip(ns, cs)):
        raise ValueError("aspr needs 0 <= num_correct <= num_samples for every problem")
    rates = [c / n for n, c in zip(ns, cs) if c > 0]
    return float(np.mean(rates)) if rates else 0.0


def solved_fraction(num_correct: Sequence[int]) -> float:
    """Fraction of problems with at least one passing sample (pass@n)."""
    cs = list(num_correct)
    return float(np.mean([c > 0 for c in cs])) if cs else 0.0


def summarize(num_samples: Sequence[int] | int, num_correct: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """{"pass@k" for each k <= the smallest n, "aspr", "solved", "problems"}: the eval command's report."""
    cs = list(num_correct)
    ns = [num_samples] * len(cs) if isinstance(num_samples, int) else list(num_samples)
    out: dict = {f"pass@{k}": mean_pass_at_k(ns, cs, k) for k in ks if cs and k <= min(ns)}
    out.update(aspr=aspr(ns, cs), solved=solved_fraction(cs), problems=len(cs))
    return out
