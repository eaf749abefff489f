"""A training step compiles once: the state it returns has the same shardings as the state it was given, also when
the base model was loaded without a mesh (a second compile per run once cost a TPU/GPU run ~1 s a step in the
benchmark's timing window)."""
import jax

from o1jax.models.config import ModelConfig
from o1jax.models.sharding import make_mesh
from o1jax.models.spec import init_params
from o1jax.training.config import TrainConfig
from o1jax.training.mesh import put_batch
from o1jax.training.state import build_trainer
from o1jax.training.testing import synthetic_batch


def test_step_compiles_once_across_steps():
    cfg = ModelConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=8)
    params = init_params(cfg, jax.random.key(0))  # no mesh: single-device arrays
    mesh = make_mesh(1, -1, 1)
    for kind, use_lora in (("sft", False), ("dpo", True)):
        tc = TrainConfig()
        tc.train.batch_size, tc.lora.enabled = 4, use_lora
        tr = build_trainer(kind, tc, cfg, params, mesh)
        batch = put_batch(synthetic_batch(kind, 4, 32, vocab=256), mesh)
        for _ in range(3):
            jax.block_until_ready(tr.step(batch))
        assert tr.step_fn._cache_size() == 1, (kind, use_lora)
