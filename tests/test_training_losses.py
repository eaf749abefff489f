"""Each training loss against a NumPy reference on tiny inputs, plus the step machinery that must not change the
maths: chunked log-probs, gradient accumulation, LoRA at init, packing, data errors."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o1jax.errors import UserError
from o1jax.models.config import ModelConfig
from o1jax.models.decoder import forward
from o1jax.models.sharding import make_mesh
from o1jax.models.spec import init_params
from o1jax.training import losses, lora
from o1jax.training.config import TrainConfig
from o1jax.training.data import Batches, collate, load_examples, pack
from o1jax.training.mesh import put_batch
from o1jax.training.state import build_trainer

CFG = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  head_dim=8)


def _np_log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def test_sft_loss_matches_numpy_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7))
    targets = rng.integers(0, 7, (2, 5))
    mask = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]], np.float32)
    logp_all = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ref = -(np.take_along_axis(logp_all, targets[..., None], -1)[..., 0] * mask).sum() / mask.sum()
    lp = jnp.take_along_axis(jax.nn.log_softmax(jnp.asarray(logits)), jnp.asarray(targets)[..., None], -1)[..., 0]
    np.testing.assert_allclose(losses.sft_loss(lp, jnp.asarray(mask)), ref, rtol=1e-6)


def test_chunked_token_logprobs_equal_full_log_softmax():
    params = init_params(CFG, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 13), 0, 64)
    pos = jnp.broadcast_to(jnp.arange(13), (2, 13))
    logits, _ = forward(params, tokens, pos, CFG)
    h, _ = forward(params, tokens, pos, CFG, return_hidden=True)
    targets = jnp.roll(tokens, -1, 1)
    full = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    p = jax.nn.softmax(logits)
    ent_full = -(p * jax.nn.log_softmax(logits)).sum(-1)
    lp, ent = losses.token_logprobs(params, h, targets, CFG, chunk=4, with_entropy=True)  # 13 = 3*4 + 1 padded
    np.testing.assert_allclose(lp, full, atol=1e-5)
    np.testing.assert_allclose(ent, ent_full, atol=1e-5)


def test_dpo_loss_is_log2_when_policy_equals_reference_and_matches_numpy():
    pc, pr = jnp.array([-3.0, -5.0]), jnp.array([-4.0, -2.0])
    loss, m = losses.dpo_loss(pc, pr, pc, pr, beta=0.1)
    np.testing.assert_allclose(loss, np.log(2), rtol=1e-6)
    assert float(m["reward_margin"]) == 0.0
    rc, rr = jnp.array([-3.5, -4.0]), jnp.array([-3.0, -3.0])
    loss, m = losses.dpo_loss(pc, pr, rc, rr, beta=0.5)
    margin = 0.5 * ((np.array([-3, -5]) - [-3.5, -4]) - (np.array([-4, -2]) - [-3, -3]))
    np.testing.assert_allclose(loss, -_np_log_sigmoid(margin).mean(), rtol=1e-6)
    np.testing.assert_allclose(m["reward_accuracy"], (margin > 0).mean())
    np.testing.assert_allclose(m["reward_margin"], margin.mean(), rtol=1e-6)


def test_prm_pointwise_bce_soft_and_hard_labels():
    s = np.array([0.3, -1.2, 2.0, 0.0])
    for labels in (np.array([1.0, 0.0, 0.7, 0.5]), np.array([1.0, 0.0, 1.0, 0.0])):
        mask = np.array([1, 1, 1, 0], np.float32)
        ref = -(labels * _np_log_sigmoid(s) + (1 - labels) * _np_log_sigmoid(-s))
        np.testing.assert_allclose(losses.pointwise_bce(jnp.asarray(s), labels, mask), (ref * mask).sum() / 3,
                                   rtol=1e-6)


def test_bradley_terry_and_generative_prm():
    w, l = np.array([1.0, -0.5]), np.array([0.0, 0.5])
    loss, acc = losses.bradley_terry(jnp.asarray(w), jnp.asarray(l))
    np.testing.assert_allclose(loss, -_np_log_sigmoid(w - l).mean(), rtol=1e-6)
    assert float(acc) == 0.5
    plus, minus, v = np.array([2.0, 0.1]), np.array([1.0, 0.3]), np.array([0.8, 0.0])
    p = np.exp(plus) / (np.exp(plus) + np.exp(minus))
    ref = -(v * np.log(p) + (1 - v) * np.log(1 - p)).mean()
    np.testing.assert_allclose(losses.generative_prm_loss(plus, minus, v, np.ones(2)), ref, rtol=1e-6)


def _np_gae(r, v, m, gamma, lam):
    B, T = r.shape
    adv = np.zeros_like(r)
    for b in range(B):
        last = 0.0
        for t in reversed(range(T)):
            if not m[b, t]:
                continue
            nv = v[b, t + 1] if t + 1 < T and m[b, t + 1] else 0.0
            last = r[b, t] + gamma * nv - v[b, t] + gamma * lam * last
            adv[b, t] = last
    return adv, (adv + v) * m


def test_gae_matches_numpy_loop_with_process_and_outcome_rewards():
    rng = np.random.default_rng(1)
    m = np.array([[0, 0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0, 0]], np.float32)
    r = np.zeros((2, 7), np.float32)
    r[0, 3], r[0, 5], r[1, 3] = 0.4, 1.0, 0.7  # a process reward at a step end, outcome rewards at the last token
    v = rng.normal(size=(2, 7)).astype(np.float32)
    adv, ret = losses.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(m), 0.9, 0.8)
    ref_adv, ref_ret = _np_gae(r, v, m, 0.9, 0.8)
    np.testing.assert_allclose(adv, ref_adv, atol=1e-6)
    np.testing.assert_allclose(ret, ref_ret, atol=1e-6)


def test_ppo_losses():
    logp = jnp.array([[-1.0, -2.0, -0.5]])
    mask = jnp.array([[1.0, 1.0, 0.0]])
    loss, m = losses.ppo_policy_loss(logp, logp, jnp.zeros_like(logp), mask, 0.2)
    assert float(loss) == 0.0 and float(m["clipfrac"]) == 0.0  # zero advantage + identical policies
    old = jnp.array([[-1.5, -1.0, -0.5]])
    adv = jnp.array([[1.0, -2.0, 3.0]])
    ratio = np.exp(np.array(logp - old))
    ref = -np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv)
    loss, _ = losses.ppo_policy_loss(logp, old, adv, mask, 0.2)
    np.testing.assert_allclose(loss, (ref * mask).sum() / 2, rtol=1e-6)
    vals, oldv, ret = jnp.array([[0.5, 2.0, 0.0]]), jnp.array([[0.0, 1.0, 0.0]]), jnp.array([[1.0, 0.0, 5.0]])
    vc = np.array(oldv) + np.clip(np.array(vals - oldv), -0.2, 0.2)
    ref_v = 0.5 * np.maximum((np.array(vals) - ret) ** 2, (vc - ret) ** 2)
    np.testing.assert_allclose(losses.ppo_value_loss(vals, oldv, ret, mask, 0.2), (ref_v * mask).sum() / 2,
                               rtol=1e-6)
    shaped = losses.kl_shaped_rewards(jnp.array([[0.0, 1.0, 0.0]]), old, logp, mask, 0.1)
    np.testing.assert_allclose(shaped, np.array([[-0.1 * -0.5, 1.0 - 0.1 * 1.0, 0.0]]), rtol=1e-6)


def test_lora_merge_adds_scaled_low_rank_product_and_starts_at_base():
    specs = lora.lora_specs(CFG, 2, ["q", "o", "down"])
    ad = lora.init_lora(specs, jax.random.key(0))
    params = init_params(CFG, jax.random.key(1))
    merged = lora.merge(params, ad, 16.0)
    for k in params:  # b = 0 at init: exactly the base model
        np.testing.assert_array_equal(merged[k], params[k])
    ad = {k: v + 0.1 if k.endswith("/b") else v for k, v in ad.items()}
    merged = lora.merge(params, ad, 16.0)
    a, b = np.asarray(ad["lora/o/a"]), np.asarray(ad["lora/o/b"])  # o: [L, H, Hd, r] @ [L, r, D]
    np.testing.assert_allclose(merged["layers/o"], np.asarray(params["layers/o"]) +
                               16.0 * np.einsum("lhkr,lrd->lhkd", a, b), atol=1e-5)


def _sft_batch(B=4, T=16, seed=0):
    rng = np.random.default_rng(seed)
    inp = rng.integers(0, 64, (B, T)).astype(np.int32)
    lens = np.array([16, 12, 9, 14])[:B]
    seg = (np.arange(T)[None] < lens[:, None]).astype(np.int32)
    return {"inputs": inp, "targets": np.roll(inp, -1, 1), "positions": np.tile(np.arange(T, dtype=np.int32), (B, 1)) * seg,
            "segment_ids": seg, "loss_mask": ((np.arange(T)[None] >= 3) * seg).astype(np.float32)}


def test_gradient_accumulation_equals_full_batch_step(use_lora=False):
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    params = init_params(CFG, jax.random.key(0))
    out = []
    for micro in (4, 1):
        tc = TrainConfig()
        tc.train.batch_size, tc.train.micro_batch_size, tc.optim.lr = 4, micro, 1e-2
        tc.optim.name = "sgd"  # linear in the gradient: Adam's g/sqrt(v) would magnify float-order noise near 0
        tc.lora.enabled, tc.lora.targets = use_lora, ["q", "v", "up"]
        tr = build_trainer("sft", tc, CFG, params, mesh)
        m = tr.step(put_batch(_sft_batch(), mesh))
        out.append((float(m["loss"]), jax.tree.map(np.asarray, tr.state["params"])))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-6)
    for k in out[0][1]:
        np.testing.assert_allclose(out[0][1][k], out[1][1][k], atol=1e-6, err_msg=k)


def test_packed_rows_give_the_same_loss_as_padded_rows():
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    params = init_params(CFG, jax.random.key(0))
    rng = np.random.default_rng(0)
    exs = []
    for n in (7, 5, 9, 3):
        ids = rng.integers(0, 64, n + 1).astype(np.int32)
        exs.append({"inputs": ids[:-1], "targets": ids[1:], "loss_mask": (np.arange(n) >= 2).astype(np.float32)})
    tc = TrainConfig()
    tc.train.batch_size = 4
    tr = build_trainer("sft", tc, CFG, params, mesh)
    padded = tr.eval_fn(tr.state, tr.frozen, put_batch(collate(exs, 16), mesh))
    packed_rows = pack(exs, 16)
    assert len(packed_rows) == 2
    tc.train.batch_size = 2
    tr = build_trainer("sft", tc, CFG, params, mesh)
    packed = tr.eval_fn(tr.state, tr.frozen, put_batch(collate(packed_rows, 16), mesh))
    np.testing.assert_allclose(packed["loss"], padded["loss"], rtol=1e-5)


def test_malformed_data_line_names_file_and_line(tmp_path):
    from o1jax.training.testing import tiny_tokenizer
    from o1jax.models.tokenizer import Tokenizer
    tok = Tokenizer(tiny_tokenizer())
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(UserError, match=r"d\.jsonl line 2: missing key 'response'"):
        load_examples("sft", str(p), tok, TrainConfig())
    p.write_text("{not json\n")
    with pytest.raises(UserError, match=r"d\.jsonl line 1: invalid JSON"):
        load_examples("sft", str(p), tok, TrainConfig())
    p.write_text(json.dumps({"prompt": "a", "steps": ["s"], "values": [1.0, 0.0]}) + "\n")
    with pytest.raises(UserError, match=r"line 1: 'steps' \(1\) and 'values' \(2\)"):
        load_examples("prm", str(p), tok, TrainConfig())


def test_batches_are_a_pure_function_of_seed_and_step():
    exs = [{"inputs": np.arange(i + 2, dtype=np.int32), "targets": np.arange(i + 2, dtype=np.int32),
            "loss_mask": np.ones(i + 2, np.float32)} for i in range(5)]
    a, b = Batches(exs, 3, 64, seed=7), Batches(exs, 3, 64, seed=7)
    seen = [a.indices(s) for s in range(4)]
    assert [b.indices(s) for s in reversed(range(4))][::-1] == seen
    assert sorted(seen[0] + seen[1][:2]) == list(range(5))  # an epoch is a permutation


def test_lora_dropout_changes_the_gradient_not_eval_and_is_fixed_by_the_step_rng():
    """lora.dropout: 0 is exactly the plain merge; > 0 changes the training gradient but not eval; the masks are
    a pure function of (seed, step, micro-batch), so the same state and batch give bitwise the same step (resume)."""
    from o1jax.training.testing import synthetic_batch
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    base = init_params(CFG, jax.random.key(0))
    batch = put_batch(synthetic_batch("sft"), mesh)

    def trainer(rate):
        tc = TrainConfig()
        tc.train.batch_size, tc.train.micro_batch_size = 8, 4  # two micro-batches: two masks per step
        tc.optim.name, tc.optim.lr = "sgd", 0.5
        tc.lora.enabled, tc.lora.rank, tc.lora.targets, tc.lora.dropout = True, 2, ["q", "v"], rate
        tr = build_trainer("sft", tc, CFG, base, mesh)
        tr.state["params"] = {k: v + 0.05 if k.endswith("/b") else v for k, v in tr.state["params"].items()}
        return tr

    ad = {k: jnp.ones((2, 3, 2)) for k in ("lora/q/a",)} | {"lora/q/b": jnp.ones((2, 2, 5))}
    plain = lora.merge({"layers/q": jnp.zeros((2, 3, 5))}, ad, 2.0)
    np.testing.assert_array_equal(lora.merge({"layers/q": jnp.zeros((2, 3, 5))}, ad, 2.0, 0.0, jax.random.key(1))
                                  ["layers/q"], plain["layers/q"])
    t0, t1 = trainer(0.0), trainer(0.5)
    init = jax.tree.map(jnp.copy, t1.state)  # the step donates its state: keep a copy to step again from
    e0 = t0.eval_fn(t0.state, t0.frozen, batch)["loss"]
    np.testing.assert_array_equal(t1.eval_fn(t1.state, t1.frozen, batch)["loss"], e0)  # eval: no dropout

    def step_from(state):
        t1.state = jax.tree.map(jnp.copy, state)
        g = float(t1.step(batch)["grad_norm"])
        return g, {k: np.asarray(v) for k, v in t1.state["params"].items()}

    g0 = float(t0.step(batch)["grad_norm"])
    (g1, p1), (g1b, p1b) = step_from(init), step_from(init)
    assert g1 != g0  # dropout reached the gradient
    assert g1b == g1  # same (seed, step): same masks, bitwise
    for k in p1:
        np.testing.assert_array_equal(p1[k], p1b[k])
    g5, _ = step_from(dict(init, step=init["step"] + 5))  # same params and batch, another step: other masks
    assert g5 != g1
