"""ExecutionService: the JAX side's handle on the sandboxed execution service (a separate, small process).

Create it early, before JAX initialises a backend, so the process that forks sandboxes is small and single-threaded:

    with ExecutionService() as svc:
        futures = svc.submit(jobs)        # returns at once; keep the accelerator busy
        ...
        results = [f.result() for f in futures]

`run(jobs)` blocks and returns results in order; `map_unordered(jobs)` yields them as they finish.
"""
from __future__ import annotations

import concurrent.futures as cf
import io
import json
import os
import subprocess
import sys
import threading
from typing import Iterable, Iterator

_BOOT = ("import sys, types; m = types.ModuleType('o1jax'); m.__path__ = [sys.argv[1]]; sys.modules['o1jax'] = m; "
         "from o1jax.execution.server import main; sys.exit(main(sys.argv[2:]))")


class SandboxUnavailable(RuntimeError):
    """The host lacks a protection and the caller did not opt into the weaker mode."""


class ExecutionService:
    def __init__(self, workers: int | None = None, allow_weaker: bool = False):
        pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        argv = [sys.executable, "-I", "-c", _BOOT, pkg_dir, str(workers or 0)]
        if allow_weaker:
            argv.append("--allow-weaker")
        # No variable of ours reaches the service (or, through it, a program): secrets stay here.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        if os.environ.get("O1JAX_ZYGOTE") == "python":  # run as if _zygote.c were not built (libc.py)
            env["O1JAX_ZYGOTE"] = "python"
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/",
                                      close_fds=True, bufsize=0)
        # The pipes are raw (bufsize=0: every submit reaches the service at once); reading lines from a raw pipe
        # would cost a read(2) per byte, so results are read through a buffer.
        self._results = io.BufferedReader(self._proc.stdout, 1 << 16)
        first = self._results.readline()
        try:
            hello = json.loads(first)
        except ValueError:
            self._proc.kill()
            raise RuntimeError(f"execution service failed to start (exit {self._proc.wait()})") from None
        if not hello.get("ready"):
            self._proc.wait()
            raise SandboxUnavailable(hello.get("error", "execution service refused to start"))
        self.sandbox: str = hello["sandbox"]
        self.workers: int = hello["workers"]
        self.fork_loop: str = hello["fork_loop"]  # "c" (_zygote.c) or "python" (no C build, or O1JAX_ZYGOTE=python)
        if "WEAKER" in self.sandbox:
            print(f"o1jax: {self.sandbox}", file=sys.stderr)
        self._lock = threading.Lock()
        self._seq = 0
        self._pending: dict[int, tuple[cf.Future, object]] = {}
        self._closed = False
        self._reader = threading.Thread(target=self._read_results, name="o1jax-exec-results", daemon=True)
        self._reader.start()

    # ---- submission -------------------------------------------------------------------------------------------------
    def submit(self, jobs: Iterable[dict]) -> list[cf.Future]:
        """Queue jobs; each future resolves to its result dict. Never blocks on execution."""
        futures, lines = [], []
        with self._lock:
            if self._closed:
                raise RuntimeError("ExecutionService is closed")
            for job in jobs:
                fut: cf.Future = cf.Future()
                self._seq += 1
                self._pending[self._seq] = (fut, job.get("id") if isinstance(job, dict) else None)
                futures.append(fut)
                try:
                    raw = json.dumps(job, separators=(",", ":"), allow_nan=False)
                except (TypeError, ValueError, RecursionError) as e:
                    jid = job.get("id") if isinstance(job, dict) else None
                    raw = json.dumps({"id": jid if isinstance(jid, str) else None,
                                      "__unserialisable__": str(e)[:2000]})
                lines.append(f"{self._seq} {raw}\n".encode())
            data = b"".join(lines)
        threading.Thread(target=self._send, args=(data,), daemon=True).start() if len(data) > 1 << 16 \
            else self._send(data)
        return futures

    def _send(self, data: bytes) -> None:
        with self._write_lock:
            try:
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                self._fail_all("execution service is gone")

    _write_lock = threading.Lock()

    def run(self, jobs: Iterable[dict]) -> list[dict]:
        futures = self.submit(jobs)
        cf.wait(futures)  # one wake-up when all are done, not one per result
        return [f.result() for f in futures]

    def map_unordered(self, jobs: Iterable[dict]) -> Iterator[dict]:
        for fut in cf.as_completed(self.submit(jobs)):
            yield fut.result()

    # ---- results ----------------------------------------------------------------------------------------------------
    def _read_results(self) -> None:
        for line in self._results:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                fut, job_id = self._pending.pop(msg.get("seq"), (None, None))
            if fut is None:
                continue
            res = msg["result"]
            if res.get("id") is None:
                res["id"] = job_id
            fut.set_result(res)
        self._fail_all("execution service exited")

    def _fail_all(self, why: str) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut, job_id in pending.values():
            if not fut.done():
                fut.set_result({"id": job_id, "status": "sandbox_error", "passed": 0, "total": 0,
                                "compiled": False, "cases": [], "stderr": "", "duration_s": 0.0, "error": why})

    # ---- inspection -------------------------------------------------------------------------------------------------
    def processes(self) -> dict[int, int]:
        """The service's live processes, pid -> parent pid, as /proc shows them: the service itself and everything
        below it (its PID-namespace init, workers, zygotes, checkers, any program still running). For leak checks."""
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue  # gone meanwhile
                children.setdefault(ppid, []).append(int(d))
        tree, todo = {self._proc.pid: os.getpid()}, [self._proc.pid]
        while todo:
            pid = todo.pop()
            for child in children.get(pid, []):
                tree[child] = pid
                todo.append(child)
        return tree

    # ---- lifetime ---------------------------------------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._write_lock.acquire(timeout=timeout):  # a send blocked on a stuck service holds it
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            finally:
                self._write_lock.release()
        else:
            self._proc.kill()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(5)

    def __enter__(self) -> "ExecutionService":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if self._proc.poll() is None:
                self._proc.kill()
        except Exception:
            pass
