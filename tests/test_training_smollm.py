"""A few LoRA SFT steps on the real SmolLM2-135M-Instruct lower the loss on a fixed batch (the training stack works
on a real checkpoint, not only on random toys)."""
import jax
import numpy as np

import o1jax
from o1jax.models.sharding import make_mesh
from o1jax.training.config import TrainConfig
from o1jax.training.data import _lm_example, collate
from o1jax.training.mesh import put_batch
from o1jax.training.state import build_trainer


def test_lora_sft_lowers_loss_on_smollm2():
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    lm = o1jax.load_model("smollm2-135m-instruct", mesh=mesh)
    tok = lm.tokenizer
    rows = [("Write a Python function that adds two numbers.", "def add(a, b):\n    return a + b\n"),
            ("Generate 3 test cases for add.", "```case\n# input:\n1 2\n# output:\n3\n```")]
    exs = [_lm_example(tok.encode(p), tok.encode(r) + [tok.eos_token_id], 64) for p, r in rows]
    tc = TrainConfig()
    tc.train.batch_size = 2
    tc.optim.lr, tc.optim.schedule = 2e-3, "constant"
    tc.lora.enabled, tc.lora.rank, tc.lora.alpha, tc.lora.targets = True, 8, 32.0, ["q", "v"]
    tr = build_trainer("sft", tc, lm.cfg, lm.params, mesh)
    batch = put_batch(collate(exs, 64), mesh)
    losses = [float(tr.step(batch)["loss"]) for _ in range(4)]
    final = float(tr.eval_fn(tr.state, tr.frozen, batch)["loss"])
    assert np.isfinite(losses).all()
    assert final < losses[0] - 0.1, (losses, final)
