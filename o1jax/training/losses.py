"""The losses of every training stage of the o1-Coder loop, as pure functions of arrays: SFT cross-entropy, DPO, the
PRM heads (point-wise BCE, pair-wise Bradley-Terry, generative +/-), and PPO (GAE, clipped policy and value losses,
KL shaping, entropy). Each returns a *sum* divided by a caller-given denominator, so that summing it over the
micro-batches of a global batch gives exactly the global-batch mean (gradient accumulation changes nothing)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from o1jax.models.decoder import lm_head


def _denom(mask, denom):
    return jnp.maximum(mask.sum(), 1.0) if denom is None else denom


# ---------------------------------------------------------------------------------------------- token log-probs
def token_logprobs(params: dict, hidden, targets, cfg, chunk: int = 512, with_entropy: bool = False):
    """hidden [B, T, D], targets [B, T] int -> (logp [B, T] float32 of each target, entropy [B, T] or None).

    The LM head and log-softmax run over sequence chunks under jax.checkpoint, so [B, T, V] float32 logits never
    exist whole (135M SmolLM2 at B=8, T=512 would be 800 MB; the backward recomputes each chunk)."""
    B, T, D = hidden.shape
    c = min(chunk, T) if chunk > 0 else T
    pad = (-T) % c
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
    n = (T + pad) // c
    hs = hidden.reshape(B, n, c, D).swapaxes(0, 1)  # [n, B, c, D]
    ts = targets.reshape(B, n, c).swapaxes(0, 1)  # [n, B, c]

    @jax.checkpoint
    def one(h, t):
        logits = lm_head(params, h, cfg)  # [B, c, V] float32
        logz = jax.nn.logsumexp(logits, axis=-1)
        lp = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0] - logz
        if not with_entropy:
            return lp, jnp.zeros_like(lp)
        p = jax.nn.softmax(logits, axis=-1)
        return lp, logz - jnp.sum(p * logits, axis=-1)

    lp, ent = jax.lax.map(lambda x: one(*x), (hs, ts))
    lp = lp.swapaxes(0, 1).reshape(B, n * c)[:, :T]
    ent = ent.swapaxes(0, 1).reshape(B, n * c)[:, :T]
    return lp, (ent if with_entropy else None)


def sequence_logprob(logp, mask):
    """logp [B, T], mask [B, T] -> [B] summed log-prob of the masked (response) tokens."""
    return jnp.sum(logp * mask, axis=-1)


# ---------------------------------------------------------------------------------------------- SFT
def sft_loss(logp, mask, denom=None):
    """Token cross-entropy on response tokens: logp [B, T], mask [B, T] (0 on prompt and padding)."""
    return -jnp.sum(logp * mask) / _denom(mask, denom)


# ---------------------------------------------------------------------------------------------- DPO
def dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float, label_smoothing: float = 0.0,
             denom=None):
    """Sigmoid DPO on sequence log-probs [B] each. Returns (loss, metrics); metrics are means over `denom` pairs.

    loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))  (label smoothing eps mixes in the flipped pair)."""
    chosen_reward = beta * (pi_chosen - ref_chosen)  # [B]
    rejected_reward = beta * (pi_rejected - ref_rejected)  # [B]
    margin = chosen_reward - rejected_reward
    per_pair = -(1 - label_smoothing) * jax.nn.log_sigmoid(margin) - label_smoothing * jax.nn.log_sigmoid(-margin)
    n = float(pi_chosen.shape[0]) if denom is None else denom
    metrics = {"reward_chosen": chosen_reward.sum() / n, "reward_rejected": rejected_reward.sum() / n,
               "reward_margin": margin.sum() / n, "reward_accuracy": (margin > 0).astype(jnp.float32).sum() / n}
    return per_pair.sum() / n, metrics


# ---------------------------------------------------------------------------------------------- PRM
def pointwise_bce(scores, labels, mask, denom=None):
    """Point-wise PRM: scores (logits) [...], labels in [0, 1] (hard or soft) [...], mask [...]. BCE with logits."""
    per = -(labels * jax.nn.log_sigmoid(scores) + (1 - labels) * jax.nn.log_sigmoid(-scores))
    return jnp.sum(per * mask) / _denom(mask, denom)


def bradley_terry(r_win, r_lose, denom=None):
    """Pair-wise PRM: -log sigmoid(r_win - r_lose), r_* [B]. Returns (loss, accuracy)."""
    n = float(r_win.shape[0]) if denom is None else denom
    d = r_win - r_lose
    return -jax.nn.log_sigmoid(d).sum() / n, (d > 0).astype(jnp.float32).sum() / n


def generative_prm_loss(logit_plus, logit_minus, labels, mask, denom=None):
    """Generative PRM (reference code): at each step's rating tag, CE of the two-way softmax over the "+" and "-"
    token logits against targets [v, 1 - v] (hard labels: v in {0, 1}). All args [...] float."""
    lp_plus = jax.nn.log_sigmoid(logit_plus - logit_minus)
    lp_minus = jax.nn.log_sigmoid(logit_minus - logit_plus)
    per = -(labels * lp_plus + (1 - labels) * lp_minus)
    return jnp.sum(per * mask) / _denom(mask, denom)


# ---------------------------------------------------------------------------------------------- PPO
def kl_shaped_rewards(rewards, old_logp, ref_logp, mask, kl_coef: float):
    """Per-token rewards [B, T] (process rewards at step ends, the outcome reward at the last token) minus the KL
    penalty kl_coef * (log pi_old - log pi_ref) on every response token."""
    return (rewards - kl_coef * (old_logp - ref_logp)) * mask


def gae(rewards, values, mask, gamma: float, lam: float):
    """Generalised advantage estimation over response tokens. rewards, values, mask [B, T] (mask = 1 on the
    response's tokens, which are contiguous) -> (advantages [B, T], returns [B, T]), zero outside the mask."""
    def body(carry, x):
        next_adv, next_value = carry
        r, v, m = x
        delta = r + gamma * next_value - v
        adv = (delta + gamma * lam * next_adv) * m
        # past the response (m = 0) nothing flows back; at its last token next_value/next_adv are 0
        return (adv, v * m), adv

    xs = (rewards.T, values.T, mask.T)  # scan over time, reversed
    zeros = jnp.zeros(rewards.shape[0], rewards.dtype)
    _, adv = jax.lax.scan(body, (zeros, zeros), xs, reverse=True)
    adv = adv.T
    return adv, (adv + values) * mask


def ppo_policy_loss(logp, old_logp, advantages, mask, clip_ratio: float, denom=None):
    """Clipped surrogate: -min(ratio * A, clip(ratio, 1 -+ eps) * A) on masked tokens [B, T]. Returns
    (loss, metrics: clip fraction, approx KL(old || new))."""
    ratio = jnp.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1 - clip_ratio, 1 + clip_ratio) * advantages
    per = -jnp.minimum(unclipped, clipped)
    n = _denom(mask, denom)
    clipfrac = jnp.sum((jnp.abs(ratio - 1) > clip_ratio) * mask) / n
    approx_kl = jnp.sum(((ratio - 1) - (logp - old_logp)) * mask) / n
    return jnp.sum(per * mask) / n, {"clipfrac": clipfrac, "approx_kl": approx_kl}


def ppo_value_loss(values, old_values, returns, mask, value_clip: float, denom=None):
    """0.5 * max((V - R)^2, (clip(V, V_old -+ eps) - R)^2) on masked tokens [B, T]."""
    v_clipped = old_values + jnp.clip(values - old_values, -value_clip, value_clip)
    per = 0.5 * jnp.maximum((values - returns) ** 2, (v_clipped - returns) ** 2)
    return jnp.sum(per * mask) / _denom(mask, denom)


def masked_mean(x, mask, denom=None):
    return jnp.sum(x * mask) / _denom(mask, denom)
