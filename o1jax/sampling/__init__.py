"""Sampling: the policy's generation for MCTS expansions, test-case generation, evaluation and RL rollouts.

    lm.generate(prompts, max_new_tokens=128, temperature=0.8, top_p=0.95, n=4, stop=["<Step_End>"], seed=0)
    -> for each prompt, n Completion(text, token_ids, logprobs, finish_reason)
"""
from o1jax.sampling.sampler import FINISH_REASONS, Completion, Sampler, bucket

__all__ = ["Sampler", "Completion", "FINISH_REASONS", "bucket"]
