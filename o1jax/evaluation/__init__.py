"""Evaluation of the policy: metrics (Pass@k, ASPR) over execution results of sampled code."""
