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

from o1jax.models.sharding import make_mesh
from o1jax.training.testing import one_step_each_kind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu")
    env.update(extra)
    return env


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


def test_step_on_8_device_fsdp_tensor_mesh_equals_one_device(tmp_path):
    out = tmp_path / "mesh8.pkl"
    code = textwrap.dedent(f"""
        import jax, pickle
        jax.config.update("jax_num_cpu_devices", 8)
        from o1jax.models.sharding import make_mesh
        from o1jax.training.testing import one_step_each_kind
        mesh = make_mesh(data=1, fsdp=4, tensor=2)
        assert mesh.devices.size == 8
        pickle.dump(one_step_each_kind(mesh), open({str(out)!r}, "wb"))
    """)
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    _compare(pickle.load(open(out, "rb")), _reference())


def test_two_processes_with_jax_distributed_equal_single_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = textwrap.dedent(f"""
        import sys, jax, pickle
        pid = int(sys.argv[1])
        jax.config.update("jax_num_cpu_devices", 2)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        from o1jax.training.config import MeshSection
        from o1jax.training.mesh import init_distributed, mesh_from_config
        init_distributed(MeshSection(distributed=True, coordinator_address="127.0.0.1:{port}", num_processes=2,
                                     process_id=pid, data=1, fsdp=2, tensor=2))
        assert jax.process_count() == 2 and jax.device_count() == 4
        from o1jax.training.testing import one_step_each_kind
        res = one_step_each_kind(mesh_from_config(MeshSection(data=1, fsdp=2, tensor=2)), [("sft", False, 2)])
        if pid == 0:
            pickle.dump(res, open({str(tmp_path / "dist.pkl")!r}, "wb"))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outs)
    ref = _reference()
    _compare(pickle.load(open(tmp_path / "dist.pkl", "rb")), {"sft-lora0-micro2": ref["sft-lora0-micro2"]})
