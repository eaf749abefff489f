"""Rewards from execution results: the outcome reward R, the MCTS terminal value, and the RL aggregator phi.

Paper: v^m = alpha*compile + (1-alpha)*pass; R = tau_pass or tau_fail; phi(R, r^1..m) = alpha(t)*R + (1-alpha(t)) *
(1/m) * sum_j gamma^j r^j. Reference-code defaults: gamma = 0.9, alpha(t) = max(0.1, 1 - 0.01 t), j = 0..m-1.
"""
from __future__ import annotations

from typing import Sequence


def test_case_pass_rate(result: dict) -> float:
    """passed / total; 0 for a job with no tests or that never ran."""
    total = result.get("total") or 0
    return (result.get("passed", 0) / total) if total else 0.0


def outcome_reward(result: dict | None, alpha: float = 0.0) -> float:
    """alpha*compile + (1-alpha)*pass_fraction. alpha=0 (reference code) is the plain pass fraction; None (no code
    block in the completion) scores 0."""
    if result is None:
        return 0.0
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * float(bool(result.get("compiled"))) + (1.0 - alpha) * test_case_pass_rate(result)


def binary_outcome_reward(result: dict | None, tau_pass: float = 1.0, tau_fail: float = 0.0) -> float:
    """The paper's R: tau_pass when every test passed, else tau_fail (values not given by the paper: config fields)."""
    return tau_pass if result is not None and result.get("status") == "passed" else tau_fail


def alpha_schedule(t: int, start: float = 1.0, decay: float = 0.01, floor: float = 0.1) -> float:
    """alpha(t) = max(floor, start - decay*t): weight moves from the outcome to the process rewards over training."""
    return max(floor, start - decay * t)


def aggregate_reward(outcome: float, process_rewards: Sequence[float], t: int, gamma: float = 0.9,
                     alpha: float | None = None) -> float:
    """phi(R, r^1..m) = alpha(t)*R + (1-alpha(t)) * (1/m) * sum_{j=0}^{m-1} gamma^j r^j. With no steps (m=0) the
    process term is 0."""
    a = alpha_schedule(t) if alpha is None else alpha
    m = len(process_rewards)
    process = sum(gamma ** j * r for j, r in enumerate(process_rewards)) / m if m else 0.0
    return a * outcome + (1.0 - a) * process
