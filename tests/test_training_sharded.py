"""The same step on one device, on a simulated 8-device (fsdp x tensor) CPU mesh, and on two processes joined with
jax.distributed gives the same loss and updated params: sharding is a layout, never a change in the maths."""
import os
import pickle
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from o1jax.models.sharding import make_mesh
from o1jax.training.testing import one_step_each_kind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    from o1jax.training.testing import subprocess_env
    return subprocess_env(REPO, **extra)


def _reference():
    if not hasattr(_reference, "out"):
        _reference.out = one_step_each_kind(make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    return _reference.out


def _compare(got, ref):
    assert got.keys() == ref.keys()
    for case in ref:
        np.testing.assert_allclose(got[case][0], ref[case][0], rtol=2e-5, err_msg=case)
        for k in ref[case][1]:
            np.testing.assert_allclose(got[case][1][k], ref[case][1][k], rtol=2e-5, atol=2e-6,
                                       err_msg=f"{case} {k}")


MESH8 = textwrap.dedent("""
    import sys, jax, pickle
    jax.config.update("jax_num_cpu_devices", 8)
    from o1jax.models.sharding import make_mesh
    from o1jax.training.testing import one_step_each_kind
    mesh = make_mesh(data=1, fsdp=4, tensor=2)
    assert mesh.devices.size == 8
    pickle.dump(one_step_each_kind(mesh), open(sys.argv[1], "wb"))
""")

DIST = textwrap.dedent("""
    import sys, jax, pickle
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from o1jax.training.config import MeshSection
    from o1jax.training.mesh import init_distributed, mesh_from_config
    init_distributed(MeshSection(distributed=True, coordinator_address="127.0.0.1:" + port, num_processes=2,
                                 process_id=pid, data=1, fsdp=2, tensor=2))
    assert jax.process_count() == 2 and jax.device_count() == 4
    from o1jax.training.testing import one_step_each_kind
    res = one_step_each_kind(mesh_from_config(MeshSection(data=1, fsdp=2, tensor=2)), [("sft", False, 2)])
    if pid == 0:
        pickle.dump(res, open(out, "wb"))
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 8-device process and the two jax.distributed processes, started together: each compiles on one core
    while this process computes the one-device reference (2-core CI: about half the wall time of running them in
    turn)."""
    d = tmp_path_factory.mktemp("sharded")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = lambda *args: subprocess.Popen([sys.executable, "-c", *args], env=_env(), stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True)
    procs = {"mesh8": [start(MESH8, str(d / "mesh8.pkl"))],
             "dist": [start(DIST, str(i), str(port), str(d / "dist.pkl")) for i in range(2)]}
    try:
        _reference()
        out = {}
        for name, ps in procs.items():
            logs = [p.communicate(timeout=400)[0] for p in ps]
            out[name] = (all(p.returncode == 0 for p in ps), "\n".join(x[-2000:] for x in logs),
                         d / f"{name}.pkl")
        yield out
    finally:
        for ps in procs.values():
            for p in ps:
                if p.poll() is None:
                    p.kill()


def test_step_on_8_device_fsdp_tensor_mesh_equals_one_device(runs):
    ok, log, path = runs["mesh8"]
    assert ok, log
    _compare(pickle.load(open(path, "rb")), _reference())


def test_two_processes_with_jax_distributed_equal_single_process(runs):
    ok, log, path = runs["dist"]
    assert ok, log
    ref = _reference()
    _compare(pickle.load(open(path, "rb")), {"sft-lora0-micro2": ref["sft-lora0-micro2"]})
