"""Training stages of the o1-Coder loop (TCG SFT/DPO, policy SFT/PPO/iterative DPO, PRM): pure losses, compiled
sharded steps with gradient accumulation, LoRA, resumable orbax checkpoints, and the loop behind `o1jax train`."""
from o1jax.training.config import TrainConfig

__all__ = ["TrainConfig"]
