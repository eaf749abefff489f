"""Train state and its compiled step, built from a TrainConfig: the optax optimiser and schedule, the trainable
params (full weights, or LoRA adapters over a frozen base), scalar heads (PPO value head, PRM reward head), their
shardings, and the jitted, state-donating step."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from o1jax.models.config import ModelConfig
from o1jax.models.spec import WeightSpec, weight_specs
from o1jax.training import lora
from o1jax.training.config import TrainConfig
from o1jax.training.mesh import replicated, spec_shardings
from o1jax.training.steps import StepSpec, eval_step, ppo_rollout_stats, train_step


def make_schedule(o, total_steps: int):
    end = o.lr * o.min_lr_ratio
    decay = max(total_steps - o.warmup_steps, 1)
    if o.schedule == "cosine":
        main = optax.cosine_decay_schedule(o.lr, decay, alpha=o.min_lr_ratio)
    elif o.schedule == "linear":
        main = optax.linear_schedule(o.lr, end, decay)
    else:
        main = optax.constant_schedule(o.lr)
    if o.warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(0.0, o.lr, o.warmup_steps)
    return optax.join_schedules([warm, main], [o.warmup_steps])


def make_optimizer(o, total_steps: int) -> optax.GradientTransformation:
    sched = make_schedule(o, total_steps)
    decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)  # no decay on norms, biases, heads' b
    if o.name == "adamw":
        opt = optax.adamw(sched, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=decay_mask)
    else:
        opt = optax.sgd(sched)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), opt) if o.grad_clip > 0 else opt


def head_specs(kind: str, prm_kind: str, cfg: ModelConfig) -> dict[str, WeightSpec]:
    D = cfg.hidden_size
    if kind == "ppo":
        name = "value_head/"
    elif kind == "prm" and prm_kind != "generative":
        name = "reward_head/"
    else:
        return {}
    return {name + "w": WeightSpec((D,), ("embed",), "zeros"), name + "b": WeightSpec((), (), "zeros")}


@dataclasses.dataclass
class Trainer:
    """Everything one run needs to step: static spec, state (donated each step), frozen weights, compiled fns."""
    spec: StepSpec
    cfg: TrainConfig
    mesh: object
    state: dict
    frozen: dict
    state_shardings: dict
    trainable_specs: dict
    optimizer: optax.GradientTransformation
    n_micro: int

    @functools.cached_property
    def step_fn(self):
        f = functools.partial(train_step, self.spec, self.optimizer, self.n_micro, mesh=self.mesh)
        return jax.jit(f, donate_argnums=0, out_shardings=(self.state_shardings, replicated(self.mesh)))

    @functools.cached_property
    def eval_fn(self):
        return jax.jit(functools.partial(eval_step, self.spec), out_shardings=replicated(self.mesh))

    @functools.cached_property
    def rollout_stats_fn(self):
        return jax.jit(functools.partial(ppo_rollout_stats, self.spec), out_shardings=replicated(self.mesh))

    def step(self, batch: dict) -> dict:
        self.state, metrics = self.step_fn(self.state, self.frozen, batch)
        return metrics

    def merged_params(self) -> dict:
        """The decoder's weights with LoRA merged (what export writes), float32, same shardings as the base."""
        from o1jax.training.steps import model_params
        spec = dataclasses.replace(self.spec, cfg=self.spec.cfg)
        return jax.jit(lambda p, f: model_params(spec, p, f))(self.state["params"], self.frozen)


def build_trainer(kind: str, tcfg: TrainConfig, model_cfg: ModelConfig, base_params: dict, mesh,
                  plus_id: int = 0, minus_id: int = 0) -> Trainer:
    """Trainable state from the loaded base model. base_params: flat float32 weights (sharded on `mesh`)."""
    t, L, d, prm, ppo = tcfg.train, tcfg.lora, tcfg.dpo, tcfg.prm, tcfg.ppo
    if t.batch_size % tcfg.micro_batch:
        from o1jax.errors import UserError
        raise UserError(f"train.micro_batch_size={t.micro_batch_size} must divide train.batch_size={t.batch_size}")
    cfg = model_cfg.replace(dtype=t.compute_dtype)
    spec = StepSpec(kind=kind, cfg=cfg, lora_scale=lora.scale(L.rank, L.alpha) if L.enabled else 0.0,
                    lora_dropout=L.dropout if L.enabled else 0.0,
                    remat=t.remat, loss_chunk=t.loss_chunk, beta=d.beta, label_smoothing=d.label_smoothing,
                    prm_kind=prm.kind, plus_id=plus_id, minus_id=minus_id, clip_ratio=ppo.clip_ratio,
                    value_clip=ppo.value_clip, vf_coef=ppo.vf_coef, entropy_coef=ppo.entropy_coef)
    key = jax.random.key(t.seed)
    heads = head_specs(kind, prm.kind, cfg)
    copy = jax.jit(lambda x: x.astype(jnp.float32) + 0)  # fresh buffers: the state is donated, the base is not
    if L.enabled:
        lspecs = lora.lora_specs(cfg, L.rank, L.targets)
        trainable_specs = {**lspecs, **heads}
        params = lora.init_lora(lspecs, jax.random.fold_in(key, 1), spec_shardings(lspecs, mesh))
        frozen = {"base": base_params}
    else:
        trainable_specs = {**weight_specs(cfg), **heads}
        params = {k: copy(v) for k, v in base_params.items()}
        frozen = {"ref": base_params} if spec.uses_reference else {}
    hsh = spec_shardings(heads, mesh)
    for p, s in heads.items():
        params[p] = jax.device_put(jnp.zeros(s.shape, jnp.float32), hsh[p])
    # Every array of the state and the frozen weights on its mesh sharding from the start: the step's outputs carry
    # these shardings, so inputs that differ (a base loaded without a mesh) would make the 2nd step compile again.
    pshard = spec_shardings(trainable_specs, mesh)
    params = {p: jax.device_put(v, pshard[p]) for p, v in params.items()}
    fshard = spec_shardings(weight_specs(cfg), mesh)
    frozen = {name: {p: jax.device_put(v, fshard[p]) for p, v in tree.items()} for name, tree in frozen.items()}
    optimizer = make_optimizer(tcfg.optim, t.steps)
    opt_state = jax.jit(optimizer.init)(params)
    rep = replicated(mesh)
    opt_state = jax.tree.map(lambda x: x if isinstance(x.sharding, jax.sharding.NamedSharding) and
                             x.sharding.mesh == mesh else jax.device_put(x, rep), opt_state)
    state = {"params": params, "opt_state": opt_state, "step": jax.device_put(jnp.int32(0), rep),
             "rng": jax.device_put(jax.random.key_data(key), rep)}
    shardings = {"params": pshard, "opt_state": jax.tree.map(lambda x: x.sharding, opt_state), "step": rep,
                 "rng": rep}
    return Trainer(spec=spec, cfg=tcfg, mesh=mesh, state=state, frozen=frozen, state_shardings=shardings,
                   trainable_specs=trainable_specs, optimizer=optimizer, n_micro=t.batch_size // tcfg.micro_batch)
