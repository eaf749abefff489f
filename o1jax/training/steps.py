"""The compiled training steps. `make_train_step(spec, optimizer, ...)` returns one jitted function

    (state, frozen, batch) -> (state, metrics)

that runs the stage's loss (sft, dpo, prm, ppo) over micro-batches with gradient accumulation and applies the
optax update. `state` = {params (trainable, float32 master copy), opt_state, step, rng} is donated: XLA reuses its
buffers for the new state, so a step never holds two copies of the weights and optimizer moments. `frozen` holds
what does not train: the base weights under LoRA, the reference policy for DPO/PPO without LoRA."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from o1jax.models.config import ModelConfig
from o1jax.models.decoder import forward
from o1jax.training import losses, lora
from o1jax.training.mesh import batch_axes, sharding_for

HEAD_PREFIXES = ("value_head/", "reward_head/")
_DROPOUT_STREAM = 0x6C6F7261  # keeps dropout keys apart from the seed's other uses (LoRA init folds in 1)


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Static (hashable) description of one stage's step."""
    kind: str  # "sft" | "dpo" | "prm" | "ppo"
    cfg: ModelConfig  # dtype = compute dtype
    lora_scale: float = 0.0  # 0 = no LoRA (full fine-tuning)
    lora_dropout: float = 0.0  # training steps only (lora.dropout_adapters)
    remat: bool = False
    loss_chunk: int = 512
    beta: float = 0.1
    label_smoothing: float = 0.0
    prm_kind: str = "pointwise"
    plus_id: int = 0
    minus_id: int = 0
    clip_ratio: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.5
    entropy_coef: float = 0.0

    @property
    def uses_reference(self) -> bool:
        return self.kind in ("dpo", "ppo")


# ---------------------------------------------------------------------------------------------- params
def model_params(spec: StepSpec, params: dict, frozen: dict, use_lora: bool = True, dropout_key=None) -> dict:
    """The decoder's flat weights: the trainable dict (full fine-tuning) or the frozen base + merged LoRA. A
    dropout_key (training steps only) applies spec.lora_dropout to the adapters."""
    base = {k: v for k, v in {**frozen.get("base", {}), **params}.items()
            if not k.startswith(HEAD_PREFIXES) and not k.startswith(lora.PREFIX)}
    if spec.lora_scale and use_lora:
        base = lora.merge(base, {k: v for k, v in params.items() if k.startswith(lora.PREFIX)}, spec.lora_scale,
                          spec.lora_dropout, dropout_key)
    return base


def reference_params(spec: StepSpec, params: dict, frozen: dict) -> dict:
    """The frozen reference policy: the base without adapters under LoRA, else frozen['ref']."""
    if "ref" in frozen:
        return frozen["ref"]
    return jax.lax.stop_gradient(model_params(spec, params, frozen, use_lora=False))


def _hidden(spec, mp, batch, lead: int = 1):
    """Forward to the final hidden state. Row fields may carry extra leading dims (pairs: [B, 2, T])."""
    shape = batch["inputs"].shape
    flat = lambda x: x.reshape(-1, x.shape[-1])
    h, _ = forward(mp, flat(batch["inputs"]), flat(batch["positions"]), spec.cfg,
                   segment_ids=flat(batch["segment_ids"]), remat=spec.remat, return_hidden=True)
    return h.reshape(*shape, h.shape[-1])  # [..., T, D]


def _logp(spec, mp, h, targets, with_entropy=False):
    shape = targets.shape
    lp, ent = losses.token_logprobs(mp, h.reshape(-1, *h.shape[-2:]), targets.reshape(-1, shape[-1]), spec.cfg,
                                    spec.loss_chunk, with_entropy)
    return lp.reshape(shape), (None if ent is None else ent.reshape(shape))


def _head(params, prefix, h):
    """Scalar head on hidden [..., D] -> [...] float32."""
    return jnp.einsum("...d,d->...", h.astype(jnp.float32), params[prefix + "w"]) + params[prefix + "b"]


def _reference_seq_logp(spec, params, frozen, batch):
    if "ref_logp" in batch:  # precomputed once for the dataset
        return batch["ref_logp"]
    rp = reference_params(spec, params, frozen)
    h = _hidden(spec, rp, batch)
    lp, _ = _logp(spec, rp, h, batch["targets"])
    return jax.lax.stop_gradient(losses.sequence_logprob(lp, batch["loss_mask"]))


# ---------------------------------------------------------------------------------------------- losses per stage
def denominators(spec: StepSpec, batch) -> dict:
    """Global-batch normalisers, computed before the batch is split into micro-batches."""
    B = batch["inputs"].shape[0]
    if spec.kind in ("sft", "ppo"):
        return {"n": jnp.maximum(batch["loss_mask"].sum(), 1.0), "rows": jnp.float32(B)}
    if spec.kind == "prm" and spec.prm_kind != "pairwise":
        return {"n": jnp.maximum(batch["score_mask"].sum(), 1.0), "rows": jnp.float32(B)}
    return {"n": jnp.float32(B), "rows": jnp.float32(B)}


def loss_fn(spec: StepSpec, params: dict, frozen: dict, batch: dict, den: dict, dropout_key=None):
    """(loss, metrics) of one micro-batch, normalised by the global-batch denominators `den`. dropout_key: the
    micro-batch's LoRA dropout key (None in eval)."""
    mp = model_params(spec, params, frozen, dropout_key=dropout_key)
    n = den["n"]
    if spec.kind == "sft":
        h = _hidden(spec, mp, batch)
        lp, _ = _logp(spec, mp, h, batch["targets"])
        loss = losses.sft_loss(lp, batch["loss_mask"], n)
        return loss, {"loss": loss, "tokens": batch["loss_mask"].sum()}
    if spec.kind == "dpo":  # fields [B, 2, T]: pair axis 0 = chosen, 1 = rejected; one forward for both
        h = _hidden(spec, mp, batch)
        lp, _ = _logp(spec, mp, h, batch["targets"])
        pi = losses.sequence_logprob(lp, batch["loss_mask"])  # [B, 2]
        ref = _reference_seq_logp(spec, params, frozen, batch)  # [B, 2]
        loss, m = losses.dpo_loss(pi[:, 0], pi[:, 1], ref[:, 0], ref[:, 1], spec.beta, spec.label_smoothing, n)
        return loss, {"loss": loss, "tokens": batch["loss_mask"].sum(), **m}
    if spec.kind == "prm":
        h = _hidden(spec, mp, batch)
        if spec.prm_kind == "generative":  # only the two rating tokens' logits are needed
            w = mp["embed"] if spec.cfg.tie_word_embeddings else mp["lm_head"].T
            pm = w[jnp.array([spec.plus_id, spec.minus_id])].astype(jnp.float32)  # [2, D]
            lg = jnp.einsum("btd,kd->btk", h.astype(jnp.float32), pm)
            loss = losses.generative_prm_loss(lg[..., 0], lg[..., 1], batch["labels"], batch["score_mask"], n)
            return loss, {"loss": loss}
        scores = _head(params, "reward_head/", h)  # [..., T]
        if spec.prm_kind == "pointwise":
            loss = losses.pointwise_bce(scores, batch["labels"], batch["score_mask"], n)
            return loss, {"loss": loss}
        r = jnp.sum(scores * batch["score_mask"], axis=-1)  # [B, 2]: the score at each candidate's last token
        loss, acc = losses.bradley_terry(r[:, 0], r[:, 1], n)
        return loss, {"loss": loss, "pair_accuracy": acc}
    if spec.kind == "ppo":
        h = _hidden(spec, mp, batch)
        lp, ent = _logp(spec, mp, h, batch["targets"], with_entropy=spec.entropy_coef != 0.0)
        mask = batch["loss_mask"]
        pg, m = losses.ppo_policy_loss(lp, batch["old_logp"], batch["advantages"], mask, spec.clip_ratio, n)
        values = _head(params, "value_head/", h)
        vf = losses.ppo_value_loss(values, batch["old_values"], batch["returns"], mask, spec.value_clip, n)
        entropy = losses.masked_mean(ent, mask, n) if ent is not None else jnp.float32(0.0)
        loss = pg + spec.vf_coef * vf - spec.entropy_coef * entropy
        return loss, {"loss": loss, "policy_loss": pg, "value_loss": vf, "entropy": entropy, **m}
    raise ValueError(spec.kind)


# ---------------------------------------------------------------------------------------------- the step
def _split_micro(batch: dict, n_micro: int) -> dict:
    """[B, ...] -> [n_micro, B / n_micro, ...] taking rows i::n_micro, so a batch sharded in contiguous row blocks
    over devices stays sharded the same way within every micro-batch."""
    def f(x):
        mb = x.shape[0] // n_micro
        return jnp.moveaxis(x.reshape(mb, n_micro, *x.shape[1:]), 1, 0)
    return jax.tree.map(f, batch)


def train_step(spec: StepSpec, optimizer: optax.GradientTransformation, n_micro: int, state: dict, frozen: dict,
               batch: dict, mesh=None):
    den = denominators(spec, batch)
    # Dropout keys are a pure function of (run seed, step, micro-batch): a resumed run draws the same masks.
    step_key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), _DROPOUT_STREAM),
                                  state["step"])
    grad_fn = jax.value_and_grad(lambda p, b, i: loss_fn(spec, p, frozen, b, den, jax.random.fold_in(step_key, i)),
                                 has_aux=True)
    params = state["params"]
    if n_micro == 1:
        (_, metrics), grads = grad_fn(params, batch, 0)
    else:
        micro = _split_micro(batch, n_micro)

        def body(acc, xs):
            mb, i = xs
            if mesh is not None:  # keep every micro-batch spread over the batch axes
                mb = {k: jax.lax.with_sharding_constraint(v, sharding_for(batch_axes(v), v.shape, mesh))
                      for k, v in mb.items()}
            (_, m), g = grad_fn(params, mb, i)
            return jax.tree.map(jnp.add, acc, (g, m)), None

        zero_g = jax.tree.map(jnp.zeros_like, params)
        zero_m = jax.eval_shape(lambda: grad_fn(params, jax.tree.map(lambda x: x[0], micro), 0)[0][1])
        zero_m = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero_m)
        (grads, metrics), _ = jax.lax.scan(body, (zero_g, zero_m), (micro, jnp.arange(n_micro)))
    updates, opt_state = optimizer.update(grads, state["opt_state"], params)
    new_params = optax.apply_updates(params, updates)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
    new_state = {"params": new_params, "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"]}
    return new_state, metrics


def eval_step(spec: StepSpec, state: dict, frozen: dict, batch: dict):
    den = denominators(spec, batch)
    return loss_fn(spec, state["params"], frozen, batch, den)[1]


# ---------------------------------------------------------------------------------------------- PPO helpers
def ppo_rollout_stats(spec: StepSpec, params: dict, frozen: dict, batch: dict):
    """Per-token log-probs under the current (old) policy and the reference, and the value head's values:
    what PPO needs before its update. batch: inputs/targets/positions/segment_ids [B, T]."""
    mp = model_params(spec, params, frozen)
    h = _hidden(spec, mp, batch)
    old_logp, _ = _logp(spec, mp, h, batch["targets"])
    values = _head(params, "value_head/", h)
    rp = reference_params(spec, params, frozen)
    ref_logp, _ = _logp(spec, rp, _hidden(spec, rp, batch), batch["targets"])
    return old_logp, ref_logp, values


def ppo_advantages(ppo_cfg, batch: dict, whiten: bool = True) -> dict:
    """KL-shaped rewards -> GAE advantages (whitened over the batch's response tokens) and returns."""
    mask = batch["loss_mask"]
    rewards = losses.kl_shaped_rewards(batch["rewards"], batch["old_logp"], batch["ref_logp"], mask,
                                       ppo_cfg.kl_coef)
    adv, ret = losses.gae(rewards, batch["old_values"], mask, ppo_cfg.gamma, ppo_cfg.lam)
    if whiten:
        n = jnp.maximum(mask.sum(), 1.0)
        mean = jnp.sum(adv * mask) / n
        var = jnp.sum(((adv - mean) ** 2) * mask) / n
        adv = (adv - mean) * jax.lax.rsqrt(var + 1e-8) * mask
    return {**batch, "advantages": adv, "returns": ret}
