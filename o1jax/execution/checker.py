"""The worker's handle on its checker: one long-lived process per slot that runs assert-kind test code.

Why it may outlive a job: it never executes program code. It runs only the job's test code, in fresh globals, and
sees the program only as builtin values decoded from the program process's replies (harness.check_server). So what
one program does cannot reach the next job through it, and an assert job costs one new process (the program's),
not two. It is still sandboxed like a program (own PID namespace, checker uid, rlimits, no network, non-dumpable),
and it is replaced whenever a job could have left it changed: a timeout, an error other than a failed check, any
change to its interpreter state, a different memory limit, or every harness.CHECKS_PER_CHECKER jobs.
"""
from __future__ import annotations

import array
import json
import os
import socket

from o1jax.execution import sandbox


class Checker:
    def __init__(self, worker, memory_mb: int):
        """Spawned through the worker's zygote: fds 0-2 on /dev/null, 3 the job socket, 4 the verdict pipe."""
        self.memory_mb = memory_mb
        self.workdir = worker._mkdir("k", worker.uid_checker)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            self.proc = worker.spawn_with("check", self.workdir, worker.uid_checker,
                                          sandbox.Limits(cpu_s=0, memory_mb=memory_mb, nproc=1),
                                          {0: devnull, 1: devnull, 2: devnull, 3: theirs.fileno()})
        except BaseException:
            ours.close()
            worker.remove_dir(self.workdir)
            raise
        finally:
            os.close(devnull)
            theirs.close()
        self.sock = ours
        self.sock.settimeout(5.0)  # it is idle and reading when a job is sent; a stuck checker is replaced
        self._token = 0

    def send(self, program: str, code: str, entry_point: str, rpc_fds: tuple[int, int]) -> int:
        """Start one job: the program's source (the checker compiles it and sends the program process its code
        object), the test code, and the checker's ends of the two RPC pipes (read, write). Returns the job's token, or
        raises OSError when the checker is gone (the caller replaces it)."""
        self._token += 1
        line = (json.dumps({"token": self._token, "program": program, "code": code, "entry_point": entry_point})
                + "\n").encode()
        n = self.sock.sendmsg([line], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", rpc_fds))])
        if n < len(line):
            self.sock.sendall(line[n:])
        return self._token

    def verdict(self, token: int) -> dict | None:
        """This job's verdict if it has arrived (verdicts of earlier tokens are dropped)."""
        st = self.proc.s["report"]
        while True:
            msg = st.pop_line()
            if msg is None:
                return None
            if msg.get("token") == token:
                return msg

    @property
    def alive(self) -> bool:
        return self.proc.status is None and not self.proc.killed

    def close(self, worker) -> None:
        """Stop it (EOF on its socket and a kill), wait for its exit and remove its directory."""
        try:
            self.sock.close()
        except OSError:
            pass
        worker.finish([self.proc])
        worker.remove_dir(self.workdir)
