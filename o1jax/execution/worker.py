"""A worker slot: runs one job at a time, synchronously, and is the judge for it.

It holds the job's secrets (expected outputs, test code) but never forks a program itself: its zygote does, and the
zygote never sees a job. It feeds inputs, collects outputs with size caps, enforces the wall-clock limit by killing
the program's PID namespace (every process the job started dies with it), compares results and writes the verdict.
"""
from __future__ import annotations

import json
import math
import os
import select
import signal
import time
import traceback

from o1jax.execution import codec, harness, jobs, sandbox
from o1jax.execution.checker import Checker
from o1jax.execution.zygote import ZygoteClient

STDOUT_CAP = 8 << 20   # bytes of program output kept; more kills the program
STDERR_CAP = 1 << 20
REPORT_CAP = 64 << 20
SHOWN = 4096           # bytes of stdout/stderr echoed into results
KILL_GRACE_S = 5.0


def _rmtree(path: str) -> None:
    """shutil.rmtree, imported on first use: shutil pulls in zlib, bz2 and lzma (six shared libraries, 30 memory
    areas), and the zygote, forked from this process, would carry them into every program process."""
    import shutil
    shutil.rmtree(path, ignore_errors=True)


class Stream:
    def __init__(self, fd: int, cap: int, writable: bool = False):
        self.fd, self.cap, self.writable = fd, cap, writable
        self.buf, self.eof, self.overflow = bytearray(), False, False
        self.pending = b""

    def lines(self) -> list[dict]:
        out = []
        for raw in bytes(self.buf).split(b"\n"):
            if raw.strip():
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(msg, dict):
                    out.append(msg)
        return out

    def pop_line(self) -> dict | None:
        i = self.buf.find(b"\n")
        if i < 0:
            return None
        raw = bytes(self.buf[:i])
        del self.buf[:i + 1]
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError):
            return {"exc": "ProtocolError", "msg": "malformed reply"}
        return msg if isinstance(msg, dict) else {"exc": "ProtocolError", "msg": "malformed reply"}


class Proc:
    """One sandboxed process as the worker sees it."""

    def __init__(self, pid: int, pidfd: int | None, streams: dict[str, Stream]):
        self.pid, self.pidfd, self.s = pid, pidfd, streams
        self.status: int | None = None
        self.killed = False

    @property
    def finished(self) -> bool:
        return self.status is not None and all(st.eof for st in self.s.values() if not st.writable)

    def write(self, name: str, data: bytes) -> None:
        self.s[name].pending += data

    def close_writer(self, name: str) -> None:
        st = self.s[name]
        if not st.pending and not st.eof:
            os.close(st.fd)
            st.eof = True
        else:
            st.close_after = True

    def kill(self) -> None:
        if self.status is not None:
            return
        self.killed = True
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def release(self) -> None:
        for st in self.s.values():
            if not st.eof:
                try:
                    os.close(st.fd)
                except OSError:
                    pass
                st.eof = True
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def exit_info(self) -> tuple[int | None, int | None]:
        """(exit code, signal) from the wait status."""
        if self.status is None:
            return None, None
        if os.WIFSIGNALED(self.status):
            return None, os.WTERMSIG(self.status)
        return os.WEXITSTATUS(self.status), None


class Worker:
    def __init__(self, slot: int, caps: sandbox.Capabilities, job_root: str):
        self.slot, self.caps, self.job_root = slot, caps, job_root
        self.job_dir = os.path.join(job_root, f"j{slot}")  # every program's cwd, HOME and TMPDIR in this slot
        self.zyg = ZygoteClient(caps, home=self.job_dir)
        self.checker: Checker | None = None  # started by the first assert job
        self.n = 0
        self.devnull = os.open(os.devnull, os.O_RDONLY)  # stdin of call/assert programs: EOF at once
        if caps.root:
            self.uid_program, self.uid_checker = sandbox.UID_BASE + 2 * slot, sandbox.UID_BASE + 2 * slot + 1
        else:
            self.uid_program = self.uid_checker = None

    # ---- process plumbing -------------------------------------------------------------------------------------------
    def _job_dir(self) -> str:
        """The job's fresh, empty working directory. One path per slot (jobs in a slot run one at a time, and run()
        removes it after each), so the zygote sets HOME and TMPDIR once instead of every program process."""
        try:
            os.mkdir(self.job_dir, 0o700)
        except FileExistsError:  # what the last job left could not all be removed at once
            _rmtree(self.job_dir)
            os.mkdir(self.job_dir, 0o700)
        if self.uid_program is not None:
            os.chown(self.job_dir, self.uid_program, self.uid_program)
        return self.job_dir

    def _mkdir(self, tag: str, uid: int | None) -> str:
        self.n += 1
        path = os.path.join(self.job_root, f"{tag}{self.slot}-{self.n}")
        os.mkdir(path, 0o700)
        if uid is not None:
            os.chown(path, uid, uid)
        return path

    def spawn(self, role: str, workdir: str, uid: int | None, limits: sandbox.Limits,
              rpc: tuple[int, int] | None = None, worker_rpc: bool = False) -> Proc:
        """rpc: (read fd, write fd) given to the child as 5 and 6 (a peer's pipes); worker_rpc: make them ours.
        A stdio program gets its source on a task pipe; the others get it as their first RPC frame."""
        passed = {5: rpc[0], 6: rpc[1]} if rpc else {}
        if role != "stdio":
            passed[0] = self.devnull
        return self.spawn_with(role, workdir, uid, limits, passed, stdio=True, worker_rpc=worker_rpc,
                               task=role == "stdio")

    def spawn_with(self, role: str, workdir: str, uid: int | None, limits: sandbox.Limits, passed: dict[int, int],
                   stdio: bool = False, worker_rpc: bool = False, task: bool = False) -> Proc:
        """A sandboxed process with a REPORT pipe (fd 4) to us, plus stdin/stdout/stderr pipes when stdio, a task
        pipe when task, RPC pipes when worker_rpc, and `passed` (child fd -> our fd, which stays ours to close)."""
        mine, theirs, streams = [], dict(passed), {}

        def pipe(name, child_fd, child_reads, cap=0):
            r, w = os.pipe()
            ours, its = (w, r) if child_reads else (r, w)
            theirs[child_fd] = its
            os.set_blocking(ours, False)
            streams[name] = Stream(ours, cap, writable=child_reads)
            mine.append(its)

        if stdio:
            if 0 not in passed:
                pipe("stdin", 0, True)
            pipe("stdout", 1, False, STDOUT_CAP)
            pipe("stderr", 2, False, STDERR_CAP)
        if task:
            pipe("task", 3, True)
        pipe("report", 4, False, REPORT_CAP)
        if worker_rpc:
            pipe("rpc_out", 5, True)
            pipe("rpc_in", 6, False, REPORT_CAP)
        try:
            pid, pidfd = self.zyg.spawn(role, workdir, limits, uid, theirs)
        finally:
            for fd in mine:
                os.close(fd)
        return Proc(pid, pidfd, streams)

    def _reap(self, procs: list[Proc]) -> None:
        for p in procs:
            if p.status is None and p.pid in self.zyg.exits:
                p.status = self.zyg.exits.pop(p.pid)

    def pump(self, procs: list[Proc], done, deadline: float) -> bool:
        """Move bytes until done() or the deadline. False on deadline."""
        zfd = self.zyg.sock.fileno()
        self._reap(procs)  # exits reported while these processes were not being pumped
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller, owners = select.poll(), {}
            poller.register(zfd, select.POLLIN)
            for p in procs:
                for st in p.s.values():
                    if st.eof:
                        continue
                    if st.writable and st.pending:
                        poller.register(st.fd, select.POLLOUT)
                        owners[st.fd] = (p, st)
                    elif not st.writable:
                        poller.register(st.fd, select.POLLIN)
                        owners[st.fd] = (p, st)
            for fd, ev in poller.poll(max(1, int(left * 1000 + 1))):
                if fd == zfd:
                    self.zyg.drain()
                    self._reap(procs)
                    continue
                p, st = owners[fd]
                if st.writable:
                    try:
                        n = os.write(fd, st.pending[:1 << 16])
                        st.pending = st.pending[n:]
                    except BlockingIOError:
                        pass
                    except OSError:  # the program closed its end: it will not read the rest
                        st.pending = b""
                        os.close(fd)
                        st.eof = True
                        continue
                    if not st.pending and getattr(st, "close_after", False):
                        os.close(fd)
                        st.eof = True
                    continue
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    os.close(fd)
                    st.eof = True
                    continue
                if len(st.buf) + len(chunk) > st.cap:
                    st.overflow = True
                    st.buf += chunk[:max(0, st.cap - len(st.buf))]
                    p.kill()
                else:
                    st.buf += chunk
        return True

    def finish(self, procs: list[Proc]) -> None:
        """Kill whatever still runs, wait for its exit, free descriptors."""
        for p in procs:
            if p.status is None:
                p.kill()
        self.pump(procs, lambda: all(p.finished for p in procs), time.monotonic() + KILL_GRACE_S)
        for p in procs:
            p.release()

    @staticmethod
    def remove_dir(path: str) -> None:
        try:
            os.rmdir(path)  # the common case: the program left nothing behind (one syscall)
        except OSError:
            _rmtree(path)

    # ---- jobs -------------------------------------------------------------------------------------------------------
    def run(self, job: dict) -> dict:
        t0 = time.monotonic()
        dirs: list[str] = []
        try:
            kind = job["tests"]["kind"]
            res = {"stdio": self._stdio, "call": self._call, "assert": self._assert}[kind](job, dirs)
        except Exception:  # a bug of ours must not take the service down: this job reports it
            res = jobs.sandbox_error_result(job, traceback.format_exc(limit=3)[-2000:])
        finally:
            for d in dirs:
                self.remove_dir(d)
        res["duration_s"] = round(time.monotonic() - t0, 4)
        return res

    def _limits(self, job: dict, cpu_s: float) -> sandbox.Limits:
        return sandbox.Limits(cpu_s=max(1, math.ceil(cpu_s)), memory_mb=job["memory_mb"])

    @staticmethod
    def _classify(p: Proc, reports: list[dict], timed_out: bool) -> tuple[str, str | None]:
        """A failed case's outcome from what we saw (a program can only make this look worse, never pass)."""
        code, sig = p.exit_info()
        exc = next((r for r in reversed(reports) if r.get("exc")), None)
        if timed_out or sig == signal.SIGXCPU:
            return "timeout", "time limit exceeded"
        if p.s["stdout"].overflow:
            return "failed", "output limit exceeded"
        if exc and (exc.get("exc") == "MemoryError" or exc.get("memory")):
            return "memory", "MemoryError"
        if exc:
            return "runtime_error", f"{exc['exc']}: {exc.get('msg', '')}"[:500]
        if sig is not None and not (p.killed and sig == signal.SIGKILL):
            return "runtime_error", f"killed by signal {signal.Signals(sig).name}"
        if code:
            return "runtime_error", f"exit status {code}"
        return "failed", None

    def _result(self, job, compiled, cases, stderr: bytes, extra=None) -> dict:
        total = jobs.n_tests(job["tests"])
        while len(cases) < total:
            cases.append({"passed": False, "output": None, "error": "not run", "status": "failed"})
        res = {"id": job["id"], "status": jobs.job_status(compiled, cases, total),
               "passed": sum(bool(c["passed"]) for c in cases), "total": total, "compiled": compiled,
               "cases": cases, "stderr": stderr[-SHOWN:].decode("utf-8", "replace")}
        if not compiled:
            for c in cases:
                c["status"] = "compile_error"
        res.update(extra or {})
        return res

    def _stdio(self, job, dirs):
        cases, stderr, compiled = [], b"", True
        workdir = self._job_dir()
        dirs.append(workdir)
        task = harness.encode_program(job["program"])
        for case in job["tests"]["cases"]:
            p = self.spawn("stdio", workdir, self.uid_program, self._limits(job, job["timeout_s"] + 1))
            p.write("task", task)
            p.close_writer("task")
            p.write("stdin", case["input"].encode())
            p.close_writer("stdin")
            ok = self.pump([p], lambda: p.finished, time.monotonic() + job["timeout_s"])
            self.finish([p])
            reports = p.s["report"].lines()
            stderr = bytes(p.s["stderr"].buf)
            out = bytes(p.s["stdout"].buf).decode("utf-8", "replace")
            if reports and reports[0].get("compiled") is False or any(r.get("compiled") is False for r in reports):
                compiled = False
                break
            code, sig = p.exit_info()
            passed = ok and not p.killed and code == 0 and codec.stdio_matches(out, case["output"])
            status, err = ("passed", None) if passed else self._classify(p, reports, not ok)
            cases.append({"passed": passed, "output": out[:SHOWN], "error": err, "status": status})
        return self._result(job, compiled, cases, stderr)

    def _call(self, job, dirs):
        tests = job["tests"]
        cases, stderr, compiled, p = [], b"", True, None
        workdir = self._job_dir()
        dirs.append(workdir)
        program = harness.frame((job["program"], []))
        timeout = job["timeout_s"]
        for case in tests["cases"]:
            if p is None:
                p = self.spawn("serve", workdir, self.uid_program,
                               self._limits(job, timeout * (len(tests["cases"]) + 1) + 1), worker_rpc=True)
                p.write("rpc_out", program)
            p.write("rpc_out", harness.frame(("call", tests["fn_name"], case["args"], {})))
            rpc = p.s["rpc_in"]
            ok = self.pump([p], lambda: b"\n" in rpc.buf or p.status is not None or rpc.eof,
                           time.monotonic() + timeout)
            reply = rpc.pop_line() if ok else None
            reports = p.s["report"].lines()
            if any(r.get("compiled") is False for r in reports):
                compiled = False
                break
            if reply is not None and "ok" in reply:
                try:
                    value = codec.to_plain(codec.decode(reply["ok"]))
                    output = codec.dumps(value)
                except (ValueError, TypeError, RecursionError) as e:
                    cases.append({"passed": False, "output": None, "error": f"bad return value: {e}",
                                  "status": "failed"})
                    continue
                passed = codec.call_output_matches(value, case["expected"])
                cases.append({"passed": passed, "output": output, "error": None,
                              "status": "passed" if passed else "failed"})
                continue
            if reply is not None:  # the function raised
                status = "memory" if reply.get("memory") or reply.get("exc") == "MemoryError" else "runtime_error"
                cases.append({"passed": False, "output": None, "status": status,
                              "error": f"{reply.get('exc')}: {reply.get('msg', '')}"[:500]})
                continue
            # No reply: timed out or the process died. Judge this case, then start afresh for the next one.
            self.finish([p])
            stderr = bytes(p.s["stderr"].buf)
            status, err = self._classify(p, p.s["report"].lines(), not ok)
            if status == "failed":
                status, err = "runtime_error", err or "the program ended before answering"
            cases.append({"passed": False, "output": None, "error": err, "status": status})
            if any(r.get("phase") == "load" for r in p.s["report"].lines()):
                break  # the module body itself fails: every case would
            p = None
        if p is not None:
            p.close_writer("rpc_out")
            self.pump([p], lambda: p.finished, time.monotonic() + 0.5)
            self.finish([p])
            stderr = bytes(p.s["stderr"].buf)
        out_extra = {}
        if cases and len(cases) < len(tests["cases"]):
            fill = cases[-1]["status"] if cases[-1]["status"] != "passed" else "failed"
            while len(cases) < len(tests["cases"]):
                cases.append({"passed": False, "output": None, "error": "not run", "status": fill})
        return self._result(job, compiled, cases, stderr, out_extra)

    def _checker_for(self, memory_mb: int) -> Checker:
        if self.checker is not None and (not self.checker.alive or self.checker.memory_mb != memory_mb):
            self.drop_checker()
        if self.checker is None:
            self.checker = Checker(self, memory_mb)
        return self.checker

    def drop_checker(self) -> None:
        if self.checker is not None:
            self.checker.close(self)
            self.checker = None

    def _assert(self, job, dirs):
        tests = job["tests"]
        wd_prog = self._job_dir()
        dirs.append(wd_prog)
        k2c_r, k2c_w = os.pipe()
        c2k_r, c2k_w = os.pipe()
        limits = self._limits(job, job["timeout_s"] + 1)
        prog = None
        try:
            prog = self.spawn("serve", wd_prog, self.uid_program, limits, rpc=(k2c_r, c2k_w))
            for attempt in (0, 1):  # a checker that ended between jobs is replaced once
                checker = self._checker_for(job["memory_mb"])
                try:
                    token = checker.send(job["program"], tests["code"], tests["entry_point"], (c2k_r, k2c_w))
                    break
                except OSError:
                    self.drop_checker()
                    if attempt:
                        raise
        except BaseException:
            if prog is not None:  # no checker: the program must not outlive this job, nor its pipes leak
                self.finish([prog])
            raise
        finally:
            for fd in (k2c_r, k2c_w, c2k_r, c2k_w):
                os.close(fd)
        verdict = None

        def decided() -> bool:
            nonlocal verdict
            verdict = verdict or checker.verdict(token)
            return verdict is not None or not checker.alive

        deadline = time.monotonic() + job["timeout_s"]
        ok = self.pump([prog, checker.proc], decided, deadline)
        if ok:  # the checker closed its pipe ends: the program sees EOF and exits
            self.pump([prog], lambda: prog.finished, min(deadline, time.monotonic() + 0.5))
        else:  # killing the program ends any call the checker waits on; a checker that still says nothing is stuck
            prog.kill()
            self.pump([prog, checker.proc], decided, time.monotonic() + 1.0)
        self.finish([prog])
        if verdict is None or verdict.get("recycle"):
            self.drop_checker()
        prog_reports = prog.s["report"].lines()
        compiled = not any(r.get("compiled") is False for r in prog_reports + [verdict or {}])
        # Positive proof: the checker, which never ran program code, saw check() return for this very job.
        passed = ok and compiled and verdict is not None and verdict.get("verdict") == "pass"
        if passed:
            status, err = "passed", None
        elif not ok:
            status, err = "timeout", "time limit exceeded"
        else:
            status, err = self._classify(prog, prog_reports, False)
            fail = verdict if verdict is not None and verdict.get("verdict") == "fail" else None
            if fail and status == "failed":
                err = f"{fail.get('exc')}: {fail.get('msg', '')}"[:500]
                if fail.get("exc") == "MemoryError":
                    status = "memory"
                elif fail.get("exc") not in ("AssertionError",):
                    status = "runtime_error"
            elif status == "failed":
                status, err = "runtime_error", "the checker ended without a verdict"
        out = bytes(prog.s["stdout"].buf).decode("utf-8", "replace")
        case = {"passed": passed, "output": out[:SHOWN], "error": err, "status": status}
        return self._result(job, compiled, [case], bytes(prog.s["stderr"].buf))


def worker_main(slot: int, caps: sandbox.Capabilities, job_root: str, rfd: int, wfd: int) -> None:
    """Loop: one job line in ("SEQ JOB_JSON", as the client sent it), one JSON line out ({"seq", "result"}). Never
    returns."""
    # One CPU per slot (slots share CPUs round-robin): the worker, its zygote and the job's processes ping-pong on
    # one core, so each RPC is a same-CPU switch instead of a cross-CPU wakeup. Children inherit the mask.
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[slot % len(cpus)]})
    worker = Worker(slot, caps, job_root)
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = os.read(rfd, 1 << 20)
            if not chunk:
                worker.drop_checker()
                worker.zyg.close()
                os._exit(0)
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        seq, _, raw = line.partition(b" ")
        job, res = jobs.parse(raw)  # a malformed job gets its invalid_job result here; the others still run
        if job is not None:
            res = worker.run(job)
        data = b'{"seq":%d,"result":%s}\n' % (int(seq), json.dumps(res).encode())
        while data:
            data = data[os.write(wfd, data):]
