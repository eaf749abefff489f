"""The execution service as an ordinary user (user namespaces instead of root): run as root, this test drops to uid
65534 in a private mount namespace that exposes only the interpreter and this checkout (sandbox.expose_interpreter),
then checks what that mode promises. Not as root, the whole suite already runs unprivileged, so it is skipped.

In that mode every program shares the service's one uid, so jobs are kept apart by namespaces: each process sees a
private tmpfs holding only its own directory (locked: it cannot be unmounted), and no process can read another's
memory or environment."""
import os
import subprocess
import sys
import textwrap

import pytest

import o1jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(o1jax.__file__)))

SCENARIO = textwrap.dedent(r'''
    import json, sys
    sys.path.insert(0, REPO)
    from o1jax.execution import ExecutionService, SandboxUnavailable
    probe = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    unmounted = libc.umount2(b"/tmp", 2) == 0
    mine = os.path.basename(os.getcwd())
    others = [d for d in os.listdir("/tmp") if d != mine]
    open("mine.txt", "w").write("ok")
    peeked = []
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            for f in ("mem", "environ"):
                try:
                    open(f"/proc/{p}/{f}", "rb").read(1)
                    peeked.append(f)
                except OSError:
                    pass
    def add(a, b):
        assert not unmounted, "unmounted its private /tmp"
        assert not others, others
        assert not peeked, peeked
        return a + b
    """
    check = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    eq = "class Y:\n    def __eq__(s, o): return True\ndef add(a, b):\n    return Y()\n"
    forks = ("import os, time\nn = 0\nfor _ in range(300):\n    try:\n        pid = os.fork()\n"
             "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n"
             "    n += 1\ndef add(a, b):\n    return n\n")
    out = {}
    try:
        with ExecutionService(workers=2) as svc:
            out["sandbox"] = svc.sandbox
            jobs = [{"id": f"p{i}", "program": probe, "tests": {"kind": "assert", "code": check, "entry_point": "add"}}
                    for i in range(4)]
            jobs.append({"id": "eq", "program": eq, "tests": {"kind": "assert", "code": check, "entry_point": "add"}})
            jobs.append({"id": "forks", "program": forks, "tests": {"kind": "assert", "entry_point": "add",
                         "code": "def check(candidate):\n    assert candidate(0, 0) < 40, candidate(0, 0)\n"}})
            jobs.append({"id": "io", "program": "print(int(input()) * 2)",
                         "tests": {"kind": "stdio", "cases": [{"input": "3", "output": "6"}]}})
            out["results"] = {r["id"]: [r["status"], r["cases"][0]["error"] if r["cases"] else None]
                              for r in svc.run(jobs)}
            libc = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            make = libc + "made = libc.shmget(0x5eed, 4096, 0o1666) >= 0\ndef add(a, b):\n    return a + b\n"
            look = libc + "assert libc.shmget(0x5eed, 0, 0) == -1\ndef add(a, b):\n    return a + b\n"
            for jid, program in (("ipc_make", make), ("ipc_look", look)):  # one after the other
                r = svc.run([{"id": jid, "program": program,
                              "tests": {"kind": "assert", "code": check, "entry_point": "add"}}])[0]
                out["results"][jid] = [r["status"], r["cases"][0]["error"]]
    except SandboxUnavailable as e:
        out["refused"] = str(e)
    print(json.dumps(out))
''').replace("REPO", repr(REPO))

DROP = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, REPO)
    from o1jax.execution import sandbox
    sandbox.unshare(sandbox.CLONE_NEWNS)
    sandbox.mount("none", "/", None, sandbox.MS_REC | sandbox.MS_PRIVATE)
    sandbox.expose_interpreter()  # a private home holding the interpreter: cover it, bind back only what we need
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    os.chdir("/")
    os.execve(sys.executable, [sys.executable, "-I", "-c", sys.argv[1]], {"PATH": "/usr/bin:/bin"})
''').replace("REPO", repr(REPO))


@pytest.mark.skipif(os.geteuid() != 0, reason="not root: every other execution test already runs unprivileged")
def test_service_as_an_ordinary_user():
    out = subprocess.run([sys.executable, "-I", "-c", DROP, SCENARIO], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    got = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    if "refused" in got:  # no user namespaces for ordinary users here: it must say so and refuse
        assert "WEAKER" in got["refused"] and "allow_weaker" in got["refused"], got
        return
    assert got["sandbox"] == "sandbox: full isolation (user namespaces)", got
    res = got["results"]
    assert all(res[f"p{i}"] == ["passed", None] for i in range(4)), res
    assert res["eq"][0] != "passed", res
    assert res["forks"] == ["passed", None], res  # RLIMIT_NPROC holds inside the job's own user namespace
    assert res["io"] == ["passed", None], res
    assert res["ipc_make"] == res["ipc_look"] == ["passed", None], res  # a SysV segment does not outlive its job
