"""PPO wiring: rewards land on the right tokens, and one rollout + update runs end to end with the sampler and an
execution service (a stand-in here: the real sandbox is tested in tests of o1jax.execution)."""
import numpy as np

from o1jax.training.ppo import place_rewards


def test_outcome_on_last_token_and_process_rewards_on_step_ends():
    r = place_rewards(n_prompt=3, n_completion=4, outcome=1.0, process=[(1, 0.5), (3, 0.25)], length=8)
    # target index of completion token i is n_prompt - 1 + i
    np.testing.assert_allclose(r, [0, 0, 0, 0.5, 0, 1.25, 0, 0])


class _FakeService:
    def run(self, jobs):
        return [{"id": j["id"], "passed": 1, "total": 2, "status": "failed", "compiled": True} for j in jobs]


def test_ppo_rollout_and_update_run_end_to_end(tmp_path):
    import jax
    import o1jax
    from o1jax.models.sharding import make_mesh
    from o1jax.training.config import TrainConfig
    from o1jax.training.ppo import PPORunner
    from o1jax.training.state import build_trainer
    from o1jax.training.testing import sample_rows, tiny_hf_model_dir
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    lm = o1jax.load_model(tiny_hf_model_dir(str(tmp_path / "m")), mesh=mesh)
    tc = TrainConfig()
    tc.train.batch_size, tc.ppo.max_new_tokens, tc.optim.lr = 2, 12, 1e-3
    tc.lora.enabled, tc.lora.rank = True, 2
    tr = build_trainer("ppo", tc, lm.cfg, lm.params, mesh)
    runner = PPORunner(tr, lm, sample_rows("ppo", 4), tc, service=_FakeService())
    runner_code = lambda text: "def add(a, b):\n    return a + b\n"
    import o1jax.data.extraction as ex
    orig = ex.extract_code
    ex.extract_code = lambda text, *a, **k: runner_code(text)
    try:
        metrics, ntok = runner.step(0)
    finally:
        ex.extract_code = orig
    assert ntok > 0
    assert metrics["outcome_reward"] == 0.5
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(tr.state["step"]) == 1
