"""The zygote's two fork loops (C, _zygote.c, and its Python twin): the same protocol, the same answers."""
import os
import select
import shutil
import sysconfig

import pytest

from o1jax.execution import ExecutionService, harness, sandbox, zygote

LOOPS = ["c", "python"]


def _client(loop: str, tmp_path) -> zygote.ZygoteClient:
    if loop == "c" and zygote._native is None:
        pytest.skip("the C fork loop is not built here (no compiler at install time)")
    saved = zygote.NATIVE
    zygote.NATIVE = loop == "c"  # read by the forked zygote
    try:
        return zygote.ZygoteClient(sandbox.Capabilities(root=False), home=str(tmp_path))
    finally:
        zygote.NATIVE = saved


def _ask(zyg: zygote.ZygoteClient, text: bytes, fds=()) -> bytes:
    zygote._send(zyg.sock, text, list(fds))
    while True:
        msg, got = zygote._recv(zyg.sock)
        for fd in got:
            os.close(fd)
        if not msg.startswith(b"x "):
            return msg


def _exit_status(zyg: zygote.ZygoteClient, pid: int, timeout: float = 10.0) -> int:
    """The child's exit code, as its zygote reports it."""
    poller = select.poll()
    poller.register(zyg.sock, select.POLLIN)
    while pid not in zyg.exits:
        assert poller.poll(int(timeout * 1000)), f"no exit report for {pid} within {timeout} s"
        zyg.drain()
    return os.waitstatus_to_exitcode(zyg.exits.pop(pid))


def _child_exit(zyg: zygote.ZygoteClient, role: str, workdir: str, fds: dict[int, int]) -> int:
    """Spawn one child with these descriptors (child fd -> ours; ours are closed once it has them) and return its
    exit code."""
    pid, pidfd = zyg.spawn(role, workdir, sandbox.Limits(cpu_s=5, memory_mb=256), None, fds)
    for fd in set(fds.values()):
        os.close(fd)
    assert pid > 0 and pidfd is not None
    try:
        return _exit_status(zyg, pid)
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("loop", LOOPS)
def test_zygote_answers_malformed_requests_and_keeps_serving(loop, tmp_path):
    zyg = _client(loop, tmp_path)
    try:
        r, w = os.pipe()
        bad = [b"garbage", b"7 serve - 1 x 16 64 32 4 /tmp",  # a limit that is not a number
               b"8 serve - 1 64 16 64 32 4,5 /tmp",  # two targets, one descriptor
               b"9 serve - 1 64 16 64 32 9 /tmp",  # a target outside 0-6
               b"10 serve nobody 1 64 16 64 32 4 /tmp",  # a uid that is not a number
               b"11 serve - 1 64 16 64 32 4 /" + b"x" * 5000]  # longer than a request can be
        for text in bad:
            reply = _ask(zyg, text, [w])
            assert reply.startswith(b"e "), (text, reply)
            if text != b"garbage":
                assert reply.split(b" ")[1] == text.split(b" ")[0], reply  # the error names the request's token
        # Still serving: a real child, whose exit status comes back (a role the harness does not know exits 1).
        assert _child_exit(zyg, "no-such-role", str(tmp_path), {4: w}) == 1
        os.close(r)
    finally:
        zyg.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_child_that_cannot_enter_its_sandbox_says_so_and_exits_121(loop, tmp_path):
    """Both loops enter the job sandbox in the child (the C one in C): a step that fails (here chdir into a directory
    that is not there) ends the child before any job data, with the reason on its stderr."""
    zyg = _client(loop, tmp_path)
    try:
        r, w = os.pipe()
        assert _child_exit(zyg, "serve", str(tmp_path / "gone"), {2: w, 4: w}) == 121
        said = os.read(r, 4096).decode()
        assert said.startswith("sandbox setup failed:") and ("chdir" in said or "FileNotFoundError" in said), said
        os.close(r)
    finally:
        zyg.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_zygote_kills_its_children_when_its_worker_goes(loop, tmp_path):
    """A worker that closes its end (or dies) takes every process its zygote started with it."""
    zyg = _client(loop, tmp_path)
    r, w = os.pipe()
    tr, tw = os.pipe()
    os.write(tw, harness.encode_program("import time\ntime.sleep(60)\n"))  # a stdio child reads it from fd 3
    os.close(tw)
    pid, pidfd = zyg.spawn("stdio", str(tmp_path), sandbox.Limits(cpu_s=60, memory_mb=256), None,
                           {0: r, 1: w, 2: w, 3: tr, 4: w})
    for fd in (r, w, tr):
        os.close(fd)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    assert not poller.poll(500), "the child should still be sleeping"
    zyg.close()  # the zygote SIGKILLs what it started, then exits
    assert poller.poll(10_000), f"child {pid} outlived its zygote"
    os.close(pidfd)


@pytest.mark.skipif(os.environ.get("O1JAX_ZYGOTE") == "python", reason="the Python loop was asked for")
def test_service_runs_the_c_loop_where_it_could_be_built():
    """pip install builds _zygote.c wherever a C compiler exists (CI has one); a failed build would silently cost the
    service its fast fork loop, so the suite says so."""
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if not (shutil.which("cc") or shutil.which("gcc")) or not os.path.exists(headers):
        pytest.skip("no C compiler or no Python headers on this host: the service runs the Python loop")
    with ExecutionService(workers=1) as svc:
        assert svc.fork_loop == "c", "o1jax/execution/_zygote.c is not built: rerun pip install -e ."
    os.environ["O1JAX_ZYGOTE"] = "python"
    try:
        with ExecutionService(workers=1) as svc:
            assert svc.fork_loop == "python"
            job = {"id": "a", "program": "def f(x):\n    return x\n",
                   "tests": {"kind": "assert", "code": "def check(c):\n    assert c(1) == 1\n", "entry_point": "f"}}
            assert svc.run([job])[0]["status"] == "passed"
    finally:
        del os.environ["O1JAX_ZYGOTE"]
