"""The execution service covers /tmp with a private tmpfs for job directories; a checkout (or venv) that itself
lives under /tmp must stay visible to the service (a fresh clone in /tmp once failed to start the service)."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import o1jax


def test_service_runs_from_a_checkout_under_tmp():
    root = tempfile.mkdtemp(prefix="o1jax-checkout-", dir="/tmp")
    try:
        shutil.copytree(os.path.dirname(o1jax.__file__), os.path.join(root, "o1jax"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        script = textwrap.dedent(f"""
            import sys; sys.path.insert(0, {root!r})
            import o1jax.execution.service as s
            assert s.__file__.startswith({root!r}), s.__file__
            from o1jax.execution import ExecutionService
            with ExecutionService(workers=1) as svc:
                r = svc.run([{{"id": "a", "program": "def f(x):\\n    return x + 1\\n",
                              "tests": {{"kind": "call", "fn_name": "f", "cases": [{{"args": [1], "expected": 2}}]}}}}])
            print(r[0]["status"])
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "passed"
    finally:
        shutil.rmtree(root, ignore_errors=True)
