"""The execution service process: probes the host's protections, enters its namespaces, forks one worker per slot
(each with its own zygote) before reading any job, then dispatches job lines from stdin to idle workers and writes
result lines to stdout as they finish. Started by ExecutionService (service.py) with a scrubbed environment.

Wire format: in, "SEQ JSON_JOB\\n"; out, {"seq": SEQ, "result": {...}} per job, plus one first line
{"ready": true, "sandbox": "..."} (or {"ready": false, "error": "..."} and exit 3 when protections are missing).
"""
from __future__ import annotations

import collections
import fcntl
import json
import os
import selectors
import signal
import sys

from o1jax.execution import sandbox, zygote

WORKERS_PER_CPU = 1
# Jobs a worker holds at once: the one it runs and the next, so it never waits on this process between jobs (~2% on
# HumanEval). The cost: at the end of a batch, a job may wait behind a slow one while another worker is idle.
DEPTH = 2
# A busy worker gets its next job only if that job's line fits in half its pipe (emptied by the worker before it
# started its job; 64 KB by default, less when the user's pipe quota runs low): a write that blocked here while the
# worker blocks writing us its result would deadlock. Job lines go to workers exactly as the client sent them.
PREFETCH_SHARE = 2


def _write(data: bytes) -> None:
    while data:
        data = data[os.write(1, data):]


def _emit(msg: dict) -> None:
    _write((json.dumps(msg) + "\n").encode())


def main(argv: list[str]) -> int:
    workers = int(argv[0]) if argv else 0
    allow_weaker = "--allow-weaker" in argv
    # One slot per core by default: a job is one new process plus RPCs to the slot's long-lived checker, all pinned
    # to the slot's core; two slots per core measured ~10% slower on HumanEval (more switching, colder caches).
    workers = workers or WORKERS_PER_CPU * len(os.sched_getaffinity(0))
    caps = sandbox.probe()
    if not caps.full and not allow_weaker:
        _emit({"ready": False, "error": caps.describe() + ". Refusing to run untrusted code; pass "
               "allow_weaker=True (CLI: --allow-weaker-sandbox) to accept this weaker isolation."})
        return 3
    if caps.namespaces:
        sandbox.enter_service_namespaces(caps)
        pid = os.fork()  # the first child after unshare(CLONE_NEWPID) is the init of the service's PID namespace
        if pid:
            signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
            while True:
                try:
                    _, status = os.waitpid(pid, 0)
                    return os.waitstatus_to_exitcode(status) & 0xFF
                except InterruptedError:
                    continue
        sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)
        sandbox.finish_service_mounts(caps)
        job_root = sandbox.JOB_ROOT
    else:
        import tempfile  # here, not at the top: the zygotes fork from this process and need none of it
        job_root = tempfile.mkdtemp(prefix="o1jax-exec-")
        os.chmod(job_root, 0o711)
    try:
        return _serve(caps, workers, job_root)
    finally:
        if not caps.namespaces:
            import shutil
            shutil.rmtree(job_root, ignore_errors=True)


def _serve(caps: sandbox.Capabilities, n_workers: int, job_root: str) -> int:
    devnull = os.open(os.devnull, os.O_RDWR)
    slots = []  # (pid, to_worker_fd, from_worker_fd)
    for slot in range(n_workers):
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            from o1jax.execution.worker import worker_main
            os.dup2(devnull, 0)  # workers and zygotes hold no end of the client's pipes
            os.dup2(devnull, 1)
            for fd in (to_w, from_r):
                os.close(fd)
            for _, a, b in slots:
                os.close(a)
                os.close(b)
            sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)
            worker_main(slot, caps, job_root, to_r, from_w)
        os.close(to_r)
        os.close(from_w)
        slots.append((pid, to_w, from_r))
    _emit({"ready": True, "sandbox": caps.describe(), "workers": n_workers,
           "fork_loop": "c" if zygote.NATIVE else "python"})

    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, None)
    inflight = {i: collections.deque() for i in range(n_workers)}  # live slot -> seqs it holds, oldest first
    prefetch_bytes = min(fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) for _, w, _ in slots) // PREFETCH_SHARE - 256
    bufs = {i: b"" for i in range(n_workers)}
    for i, (_, _, rfd) in enumerate(slots):
        sel.register(rfd, selectors.EVENT_READ, i)
    queue: collections.deque[bytes] = collections.deque()
    inbuf, stdin_open = b"", True
    while stdin_open or queue or any(inflight.values()):
        while queue:
            small = len(queue[0]) <= prefetch_bytes
            free = [i for i, held in inflight.items() if not held or (small and len(held) < DEPTH)]
            if not free:
                break
            line = queue.popleft()
            seq = int(line.partition(b" ")[0])
            slot = min(free, key=lambda i: len(inflight[i]))  # an idle worker first
            inflight[slot].append(seq)
            _write_fd(slots[slot][1], line + b"\n")  # as the client wrote it: the worker parses and checks it
        if not any(inflight.values()) and not stdin_open and not queue:
            break
        for key, _ in sel.select(timeout=1.0):
            if key.data is None:
                chunk = os.read(0, 1 << 20)
                if not chunk:
                    stdin_open = False
                    sel.unregister(0)
                    continue
                inbuf += chunk
                *lines, inbuf = inbuf.split(b"\n")
                queue.extend(ln for ln in lines if ln.strip())
                continue
            slot = key.data
            chunk = os.read(key.fd, 1 << 20)
            if not chunk:  # a worker died: the jobs it held get sandbox_error; the slot is retired
                sel.unregister(key.fd)
                for seq in inflight.pop(slot):
                    _emit({"seq": seq, "result": {"id": None, "status": "sandbox_error", "passed": 0,
                                                  "total": 0, "compiled": False, "cases": [],
                                                  "error": "worker process died"}})
                print(f"o1jax execute: worker {slot} died", file=sys.stderr)
                if not inflight:
                    return 1
                continue
            bufs[slot] += chunk
            while b"\n" in bufs[slot]:
                line, bufs[slot] = bufs[slot].split(b"\n", 1)
                _write(line + b"\n")
                inflight[slot].popleft()
        while True:  # we may be a PID-namespace init: reap orphans
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
    for _, wfd, _ in slots:
        os.close(wfd)
    for pid, _, _ in slots:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return 0


def _write_fd(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
