"""The zygote: a small, clean, single-threaded process that forks one sandboxed process per program.

It is forked before any job exists and never receives job data (programs, tests, expected outputs), so a forked
program finds no other job in its memory. A worker asks it for a process over a SOCK_SEQPACKET socket, passing the
pipes by SCM_RIGHTS; it answers with the pid and a pidfd (kill without pid-reuse races), and later the exit status.
Its environment is scrubbed to the job environment once at start, the limits every child shares are set on it once
(inherited), it has no signal handlers for a child to undo, and it measures its address-space size itself, so a
child's setup needs no /proc access and few copy-on-write page faults.

The loop itself runs in C (_zygote.c, built by pip install) where it could be built: after each fork the zygote's
memory is shared copy-on-write with the new program, and a Python loop writes ~115 of its pages per job (every object
it touches gets a reference-count write), each one a page copy; the C loop writes ~7. `serve_python` below is the same
loop in Python, for hosts without a C compiler or with O1JAX_ZYGOTE=python (the service's hello says which one runs:
`fork_loop`).
"""
from __future__ import annotations

import _random
import array
import fcntl
import os
import random
import select
import signal
import socket
from typing import NoReturn

from o1jax.execution import harness, libc, sandbox

_native = libc.native  # the C extension, if built (and not switched off: O1JAX_ZYGOTE=python)
NATIVE = _native is not None  # run the C loop (tests pick either loop in a zygote they fork themselves)

MAX_FDS = 8
_ANC = socket.CMSG_SPACE(MAX_FDS * 4)

# Wire format (one SOCK_SEQPACKET message each, ASCII, space-separated, so the zygote's per-fork work stays small):
#   worker -> zygote  "TOKEN ROLE UID CPU_S MEMORY_MB FSIZE_MB NOFILE NPROC FD,FD,... WORKDIR" + the fds (SCM_RIGHTS)
#   zygote -> worker  "p TOKEN PID" + its pidfd | "e TOKEN MESSAGE" | "x PID WAIT_STATUS"  (UID "-": keep ours)


def _recv(sock: socket.socket, flags: int = 0) -> tuple[bytes, list[int]]:
    msg, anc, _, _ = sock.recvmsg(4096, _ANC, flags)
    return msg, harness.received_fds(anc)


def _send(sock: socket.socket, msg: bytes, fds: list[int] = ()) -> None:
    sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])


# Pre-imported once here so each program starts warm (fork shares them); all pure standard library.
WARM_MODULES = ("typing", "math", "collections", "itertools", "functools", "heapq", "bisect", "re", "string",
                "random", "json", "copy", "hashlib", "fractions", "decimal", "statistics", "operator",
                "traceback", "io", "dataclasses", "array", "datetime", "sys", "os")


# Each program its own random stream: clone_process runs no at-fork hooks, so the child re-seeds the generator
# behind random.random() & co. from os.urandom, through the C seed (random.seed's Python layer only also clears
# gauss_next, which the zygote never sets). Done in the child: the zygote would pay the page faults of reseeding
# after every fork, and the C seed touches fewer pages than random.seed.
_RNG = random.seed.__self__
LOW_FDS = frozenset(range(7))  # a child's fixed descriptors (see harness: stdio, TASK, REPORT, RPC_IN, RPC_OUT)
PRESET = sandbox.Limits(cpu_s=0, memory_mb=0)  # the file-size, open-file and process limits every child inherits
VM_REMEASURE = 64  # forks between measurements of the zygote's address-space size (it barely changes)


def zygote_main(sock: socket.socket, caps: sandbox.Capabilities, home: str) -> None:
    """Serve spawn requests until the worker closes its end. Never returns.

    Children are reaped through their pidfds (polled with the request socket), not a SIGCHLD handler, so the zygote
    installs no signal handler and a child has none to undo: its dispositions are a fresh interpreter's."""
    import importlib
    for name in WARM_MODULES:
        importlib.import_module(name)
    sandbox.scrub_environment(home)  # HOME and TMPDIR: the slot's job directory, where every program runs
    sandbox.enter_zygote_limits(caps, PRESET)
    harness.prepare_stdio()  # the objects every program gets as sys.stdin/stdout/stderr over its fds 0-2
    harness.rehearse()  # quicken and specialise the program process's bytecode here, once, not in every child
    import gc
    gc.collect()
    gc.freeze()  # children's collections skip everything inherited: fewer copy-on-write page faults per program
    sandbox.trim_heap()  # free heap pages go back to the kernel: fewer page-table entries to copy per fork
    flags = caps.job_clone_flags
    sock, own = _hold_low_fds(sock)
    if NATIVE:  # returns only in a new child, inside its sandbox, its descriptors in place
        policy = (caps.root, caps.namespaces, PRESET.fsize_mb, PRESET.nofile, PRESET.nproc, sandbox.JOB_ROOT,
                  sandbox.PRIVATE_TMP)
        try:
            role, workdir = _native.serve(sock.fileno(), own, flags, VM_REMEASURE, policy)
        except BaseException as e:  # in the zygote: it cannot serve; in a child: it could not become its job
            _setup_failed(e)
        _begin(role, workdir, home)
    serve_python(sock, own, flags, caps, home)


def serve_python(sock: socket.socket, own: list[int], flags: int, caps: sandbox.Capabilities, home: str) -> None:
    """The fork loop in Python (what _zygote.c does). Never returns: a child goes on into its job, the zygote exits
    when the worker closes its end."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    children: dict[int, int] = {}  # pidfd -> pid
    blind: set[int] = set()  # children without a pidfd
    vm_base, forks = 0, 0
    while True:
        try:
            events = poller.poll(20 if blind else None)
        except InterruptedError:
            continue
        for pid in list(blind):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                blind.discard(pid)
                sock.send(b"x %d %d" % (pid, status))
        for fd, _ in events:
            if fd in children:  # a child exited: reap it and report
                pid = children.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                sock.send(b"x %d %d" % (pid, status))
        if not any(fd == sock.fileno() for fd, _ in events):
            continue
        req, fds = _recv(sock)  # the descriptors land above LOW_FDS: 0-6 are always held
        if not req:
            for pidfd in children:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os._exit(0)
        token = req.split(b" ", 1)[0]
        targets: list[int] = []
        try:
            if len(req) >= 4096 or len(fds) > MAX_FDS:
                raise ValueError("request too long")
            _, role, uid, cpu_s, memory_mb, fsize_mb, nofile, nproc, targets_s, workdir = req.decode().split(" ", 9)
            limits = sandbox.Limits(int(cpu_s), int(memory_mb), int(fsize_mb), int(nofile), int(nproc))
            uid_n = None if uid == "-" else int(uid)
            targets = [int(t) for t in targets_s.split(",")]
            if len(targets) != len(fds) or not set(targets) <= LOW_FDS:
                raise ValueError("descriptors do not match their targets")
            # Put the job's descriptors in place here: the child inherits them at their numbers. (A wash in CPU,
            # measured: the zygote pays the page faults the child no longer does; but the child has less to go wrong.)
            for fd, target in zip(fds, targets):
                os.dup2(fd, target)
            if forks % VM_REMEASURE == 0:
                vm_base = sandbox.vm_size_bytes()  # measured here so the child need not open /proc
            forks += 1
            pid = sandbox.clone_process(flags)
        except (OSError, ValueError) as e:
            pid = None
            sock.send(b"e %s %s" % (token, str(e).encode()))
        if pid == 0:
            _child(role, uid_n, limits, tuple(targets), workdir, caps, vm_base, home)
        for target in targets:
            if target in LOW_FDS:
                os.dup2(own[target], target)
        for fd in fds:
            os.close(fd)
        if pid is None:
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # kernels before 5.3: poll for this child's exit instead
            blind.add(pid)
            sock.send(b"p %s %d" % (token, pid))
            continue
        children[pidfd] = pid
        poller.register(pidfd, select.POLLIN)
        _send(sock, b"p %s %d" % (token, pid), [pidfd])


def _child(role: str, uid: int | None, limits: sandbox.Limits, targets: tuple[int, ...], workdir: str, caps,
           vm_base: int, home: str) -> None:
    """In a new process of the Python loop: its descriptors are already in place; every other inherited one (the
    zygote's socket, pidfds, the /dev/null it holds 0-6 with) is closed by enter_job_sandbox."""
    try:
        sandbox.enter_job_sandbox(caps, uid, workdir, limits, targets, vm_base=vm_base, preset=PRESET,
                                  checker=role == "check")
    except BaseException as e:
        _setup_failed(e)
    _begin(role, workdir, home)


def _begin(role: str, workdir: str, home: str) -> None:
    """In a new process, its sandbox entered (by _child, or by the C loop before it returned): its own random stream,
    the checker's own HOME (every program's is the zygote's), then its role. Never returns."""
    try:
        _random.Random.seed(_RNG, None)
        if workdir != home:
            os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    except BaseException as e:
        _setup_failed(e)
    harness.child_main(role)


def _setup_failed(e: BaseException) -> NoReturn:
    try:
        os.write(2, f"sandbox setup failed: {e!r}\n".encode())
    finally:
        os._exit(121)


def _hold_low_fds(sock: socket.socket) -> tuple[socket.socket, list[int]]:
    """Move the zygote's socket above LOW_FDS, close what it inherited from the worker, and hold every low descriptor
    (its own 0-2, /dev/null on 3-6), so descriptors it receives or opens later (a job's pipes, pidfds) never land
    there and a job's can be put at their numbers with dup2 before the clone. Returns the moved socket and, per low
    descriptor, a high copy of what the zygote holds there, to put back after each clone."""
    high = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, len(LOW_FDS))
    sock.close()
    os.closerange(3, high)
    os.closerange(high + 1, 1 << 20)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in sorted(LOW_FDS - {0, 1, 2, null}):
        os.dup2(null, fd)
    own = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, len(LOW_FDS)) for fd in sorted(LOW_FDS)]
    return socket.socket(fileno=high), own


class ZygoteClient:
    """The worker's handle on its zygote."""

    def __init__(self, caps: sandbox.Capabilities, home: str):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                self.sock.close()
                zygote_main(theirs, caps, home)
            finally:  # never unwind into the worker's code: not the zygote, not any child of it
                os._exit(70)
        theirs.close()
        self._token = 0
        self.exits: dict[int, int] = {}

    def spawn(self, role: str, workdir: str, limits: sandbox.Limits, uid: int | None,
              fds: dict[int, int]) -> tuple[int, int | None]:
        """fds: target fd in the child -> our fd. Returns (pid, pidfd)."""
        self._token += 1
        token = self._token
        targets = list(fds)
        lim = limits
        req = (f"{token} {role} {'-' if uid is None else uid} {lim.cpu_s} {lim.memory_mb} {lim.fsize_mb} "
               f"{lim.nofile} {lim.nproc} {','.join(map(str, targets))} {workdir}")
        _send(self.sock, req.encode(), [fds[t] for t in targets])
        while True:
            msg, got = _recv(self.sock)
            if not msg:
                raise RuntimeError("zygote died")
            kind, a, b = msg.split(b" ", 2)
            if kind == b"x":
                self.exits[int(a)] = int(b)
                continue
            if int(a) != token:
                for fd in got:
                    os.close(fd)
                continue
            if kind == b"e":
                raise OSError(b.decode(errors="replace"))
            return int(b), (got[0] if got else None)

    def drain(self) -> None:
        """Read every pending exit report (call when the socket is readable)."""
        while True:
            try:
                msg, got = _recv_nowait(self.sock)
            except BlockingIOError:
                return
            if not msg:
                raise RuntimeError("zygote died")
            for fd in got:
                os.close(fd)
            kind, a, b = msg.split(b" ", 2)
            if kind == b"x":
                self.exits[int(a)] = int(b)

    def close(self) -> None:
        try:
            self.sock.close()
            os.waitpid(self.pid, 0)
        except OSError:
            pass


def _recv_nowait(sock: socket.socket):
    return _recv(sock, socket.MSG_DONTWAIT)  # BlockingIOError when nothing is there
