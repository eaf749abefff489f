"""The training run config: one dataclass per TOML section (train, optim, lora, dpo, prm, ppo, mesh, checkpoint,
data, eval). Defaults here are the single source; configs/train_*.toml only override what a stage changes."""
from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class TrainSection:
    steps: int = 100
    batch_size: int = 8  # global batch (rows for sft/prm, pairs for dpo / prm pair-wise, rollouts for ppo)
    micro_batch_size: int = 0  # 0 = batch_size (no accumulation); else gradient accumulation over micro-batches
    seed: int = 0
    compute_dtype: Literal["float32", "bfloat16"] = "float32"  # params stay float32 (master weights)
    remat: bool = False  # recompute each layer's activations in the backward pass
    loss_chunk: int = 512  # sequence chunk for the LM head + log-softmax (never holds [B, T, V] logits whole)
    log_every: int = 1
    progress: bool = True
    tensorboard: bool = True

    @staticmethod
    def _check_steps(v):
        return "must be >= 1" if v < 1 else None

    @staticmethod
    def _check_batch_size(v):
        return "must be >= 1" if v < 1 else None


@dataclasses.dataclass
class OptimSection:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-5
    schedule: Literal["cosine", "constant", "linear"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine/linear decay to lr * min_lr_ratio
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0  # global-norm clipping; 0 = off


@dataclasses.dataclass
class LoraSection:
    enabled: bool = False
    rank: int = 8
    alpha: float = 32.0
    targets: list[str] = dataclasses.field(default_factory=lambda: ["q", "v"])  # of q k v o gate up down
    # Dropout on the adapter's input features (reference PRM: 0.1), training steps only; the mask is drawn per
    # layer and micro-batch from the step RNG (see training/lora.py for why it is not per token).
    dropout: float = 0.0

    @staticmethod
    def _check_dropout(v):
        return "must be in [0, 1)" if not 0.0 <= v < 1.0 else None

    @staticmethod
    def _check_targets(v):
        bad = [t for t in v if t not in ("q", "k", "v", "o", "gate", "up", "down")]
        return f"unknown LoRA target(s) {bad}; choose from q k v o gate up down" if bad else None


@dataclasses.dataclass
class DPOSection:
    beta: float = 0.1
    label_smoothing: float = 0.0  # conservative DPO; 0 = the plain sigmoid loss


@dataclasses.dataclass
class PRMSection:
    kind: Literal["pointwise", "pairwise", "generative"] = "pointwise"
    labels: Literal["soft", "hard"] = "soft"  # hard: value >= 0.5 -> 1
    rating_tag: str = " Rating"  # generative PRM: tag appended after each step
    plus_token: str = " +"
    minus_token: str = " -"


@dataclasses.dataclass
class PPOSection:
    clip_ratio: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.5
    entropy_coef: float = 0.0
    kl_coef: float = 0.05  # per-token KL(pi_old || pi_ref) penalty folded into the rewards
    gamma: float = 1.0
    lam: float = 0.95
    epochs: int = 1  # PPO epochs over each rollout batch
    # rollouts
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    step_delimiter: str = "<Step_End>"  # process rewards sit on the token ending each reasoning step
    process_rewards: bool = False  # score each step prefix with the PRM in ppo.prm_model (r^1..m)
    prm_model: str = ""  # a run dir of `o1jax train prm` (point-wise, pair-wise or generative)
    # Where rewards go. "dense": r^j on the token ending step j, R on the last token. "aggregate": the paper's
    # phi(R, r^1..m) = alpha(t)*R + (1-alpha(t)) * (1/m) sum_j process_gamma^j r^j on the last token only.
    reward: Literal["dense", "aggregate"] = "dense"
    process_gamma: float = 0.9  # phi's gamma (reference code 0.9); ppo.gamma is GAE's discount
    alpha_start: float = 1.0  # alpha(t) = max(alpha_floor, alpha_start - alpha_decay * t), t = PPO step
    alpha_decay: float = 0.01
    alpha_floor: float = 0.1
    exec_timeout_s: float = 1.0
    exec_memory_mb: int = 512


@dataclasses.dataclass
class MeshSection:
    data: int = 1
    fsdp: int = -1  # -1 = all remaining devices
    tensor: int = 1
    distributed: bool = False  # call jax.distributed.initialize() (multi-host; TPU pods auto-detect peers)
    coordinator_address: str = ""
    num_processes: int = 0
    process_id: int = -1


@dataclasses.dataclass
class CheckpointSection:
    every: int = 100  # save interval in steps (0 = only at the end and on SIGTERM)
    keep: int = 3  # keep the last N checkpoints
    async_save: bool = True
    save_on_sigterm: bool = True


@dataclasses.dataclass
class DataSection:
    max_length: int = 1024  # tokens per row (prompt + response); longer rows are truncated from the left of the prompt
    pack: bool = False  # sft/prm: pack several examples per row (segment ids keep them apart)
    chat_template: bool = False  # wrap the prompt as a user turn of the tokenizer's chat template
    append_eos: bool = True
    step_separator: str = "\n"  # between reasoning steps (prm / ppo process-reward data)
    shuffle: bool = True
    eval_file: str = ""  # same format as --data; evaluated every eval.every steps


@dataclasses.dataclass
class EvalSection:
    every: int = 0  # 0 = no periodic eval
    batches: int = 4


@dataclasses.dataclass
class TrainConfig:
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    lora: LoraSection = dataclasses.field(default_factory=LoraSection)
    dpo: DPOSection = dataclasses.field(default_factory=DPOSection)
    prm: PRMSection = dataclasses.field(default_factory=PRMSection)
    ppo: PPOSection = dataclasses.field(default_factory=PPOSection)
    mesh: MeshSection = dataclasses.field(default_factory=MeshSection)
    checkpoint: CheckpointSection = dataclasses.field(default_factory=CheckpointSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    eval: EvalSection = dataclasses.field(default_factory=EvalSection)

    @property
    def micro_batch(self) -> int:
        return self.train.micro_batch_size or self.train.batch_size
