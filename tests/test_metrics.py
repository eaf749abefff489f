"""Pass@k against a brute-force enumeration of k-subsets, and ASPR's definition."""
import itertools
import math

import pytest

from o1jax.evaluation.metrics import aspr, mean_pass_at_k, pass_at_k, solved_fraction, summarize


def brute_pass_at_k(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_1_is_fraction_correct():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_large_n_is_stable():
    # C(1000, 500) overflows floats; the product form does not.
    v = pass_at_k(1000, 1, 500)
    assert v == pytest.approx(0.5) and math.isfinite(v)
    assert pass_at_k(200, 0, 100) == 0.0 and pass_at_k(200, 150, 100) == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_mean_pass_at_k_per_problem_counts():
    assert mean_pass_at_k([4, 2], [1, 2], 1) == pytest.approx((0.25 + 1.0) / 2)
    assert mean_pass_at_k(5, [0, 5], 2) == pytest.approx(0.5)


def test_aspr_averages_pass_fraction_over_solved_problems_only():
    # problem 0 unsolved (excluded), problem 1: 2/4, problem 2: 4/4 -> 0.75, while pass@1 = 6/12 = 0.5
    assert aspr(4, [0, 2, 4]) == pytest.approx(0.75)
    assert mean_pass_at_k(4, [0, 2, 4], 1) == pytest.approx(0.5)
    assert aspr(4, [0, 0]) == 0.0
    assert solved_fraction([0, 2, 4]) == pytest.approx(2 / 3)


def test_summarize_keys():
    s = summarize(5, [0, 1, 5], ks=(1, 5, 10))
    assert set(s) == {"pass@1", "pass@5", "aspr", "solved", "problems"}
    assert s["pass@5"] == pytest.approx(2 / 3) and s["problems"] == 3
