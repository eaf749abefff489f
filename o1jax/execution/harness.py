"""What runs inside a sandboxed process, after `enter_job_sandbox` and before/around the untrusted program.

Fixed descriptors: 0 stdin, 1 stdout, 2 stderr, 3 TASK (read; the program's source, sent only after the fork, so
the zygote never holds any job's data), 4 REPORT (write; to the worker), 5 RPC_IN, 6 RPC_OUT (call and assert kinds).
Nothing a program process writes is taken as proof of passing: the worker (stdio, call) or a separate checker process
that never runs program code (assert) decides.
"""
from __future__ import annotations

import builtins
import io
import json
import os
import sys
import traceback

from o1jax.execution import codec

TASK, REPORT, RPC_IN, RPC_OUT = 3, 4, 5, 6
CONTROL = TASK  # the checker's job socket sits where a program's task pipe does
MAX_LINE = 64 << 20


class LineReader:
    def __init__(self, fd: int):
        self.fd, self.buf = fd, bytearray()

    def readline(self) -> bytes | None:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > MAX_LINE:
                raise ValueError("message too long")
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk


def send(fd: int, msg: dict) -> None:
    data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def prepare_stdio() -> None:
    """In the zygote, before any fork: the sys.std* objects every program inherits, over whatever fds 0-2 are in the
    child (its pipes), unbuffered enough to survive os._exit and a closed fd 1. Built once, not once per program."""
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8",
                                                 errors="replace")
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                                   errors="replace", write_through=True)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                                   errors="replace", write_through=True)
    sys.argv = ["program"]


def _read_program() -> str:
    """The program's source: the whole TASK pipe, UTF-8 (surrogatepass), until the worker closes it."""
    chunks = []
    while True:
        chunk = os.read(TASK, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(TASK)
    return b"".join(chunks).decode("utf-8", "surrogatepass")


_COMPILED = b'{"compiled":true}\n'


def encode_program(program: str) -> bytes:
    """What the worker writes to a program process's TASK pipe (read back by _read_program)."""
    return program.encode("utf-8", "surrogatepass")


def _exc_info(e: BaseException) -> dict:
    return {"exc": type(e).__name__, "msg": str(e)[:500]}


def _compile_and_load(src: str, name: str) -> dict | None:
    """Compile and run the module body; report compiled (syntax/import failure => false) to the worker.
    Returns the module globals, or None after reporting a failure."""
    try:
        code = compile(src, "<program>", "exec")
    except BaseException as e:  # SyntaxError, ValueError (null bytes), MemoryError, RecursionError
        send(REPORT, {"compiled": False, **_exc_info(e)})
        return None
    os.write(REPORT, _COMPILED)
    g = {"__name__": name, "__builtins__": builtins}
    try:
        exec(code, g)
    except SystemExit as e:
        if name == "__main__":
            raise
        send(REPORT, {"phase": "load", "exc": "SystemExit", "msg": str(e.code)})
        return None
    except BaseException as e:
        traceback.print_exc()
        info = _exc_info(e)
        if isinstance(e, ImportError):
            info["compiled"] = False
        send(REPORT, {"phase": "load", **info})
        return None
    return g


def run_stdio() -> int:
    program = _read_program()
    try:
        g = _compile_and_load(program, "__main__")
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if not isinstance(code, int):
            print(code, file=sys.stderr)
            return 1
        return code & 0xFF
    return 0 if g is not None else 1


def _resolve(g: dict, name: str):
    if name in g and callable(g[name]):
        return g[name]
    sol = g.get("Solution")  # LeetCode-style call problems (TACO): a method of class Solution
    if isinstance(sol, type) and hasattr(sol, name):
        return getattr(sol(), name)
    return None


def serve(plain_args: bool) -> int:
    """Run the program's module body, then answer call requests on RPC_IN/RPC_OUT until EOF.
    plain_args: the call kind sends plain JSON args; the assert kind sends tagged values."""
    program = _read_program()
    sys.stdin = io.StringIO("")
    g = _compile_and_load(program, "__program__")
    if g is None:
        return 1
    reader = LineReader(RPC_IN)
    while True:
        line = reader.readline()
        if line is None:
            return 0
        req = json.loads(line)
        if "describe" in req:
            names = {}
            for n in req["describe"]:
                v = g.get(n)
                if n not in g:
                    names[n] = None
                elif type(v).__name__ == "module":
                    names[n] = {"module": v.__name__}
                elif callable(v):
                    names[n] = {"callable": True}
                else:
                    try:
                        names[n] = {"value": codec.encode(v)}
                    except (TypeError, ValueError):
                        names[n] = None
            send(RPC_OUT, {"names": names})
            continue
        fn = _resolve(g, req["fn"])
        try:
            if fn is None:
                raise NameError(f"name {req['fn']!r} is not defined")
            args = req["args"] if plain_args else codec.decode(req["args"])
            kwargs = codec.decode(req.get("kwargs", {"d": []}))
            value = fn(*args, **kwargs)
            reply = {"ok": codec.encode(value)}
        except BaseException as e:  # the program's exception is data for the judge, never a verdict
            reply = _exc_info(e)
            if isinstance(e, MemoryError):
                reply["memory"] = True
        sys.stdout.flush()
        send(RPC_OUT, reply)


def _global_names(code) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if hasattr(c, "co_names"):
            names |= _global_names(c)
    return names


class RemoteError(Exception):
    """The program raised inside a call; re-raised in the checker as a plain builtin exception."""


def _run_check(task: dict, rpc_in: int, rpc_out: int) -> dict:
    """One job's test code (HumanEval `check(candidate)`), with `candidate` and any program-defined helper replaced
    by proxies that call into the program process (over rpc_in/rpc_out) and get back decoded builtin values. The
    checker never executes a byte of the program, so nothing the program does (patched builtins, sys.exit, a forged
    __eq__, writes to any fd) can make check() return. Returns the verdict: pass only when check() returned."""
    reader = LineReader(rpc_in)

    def rpc(msg):
        send(rpc_out, msg)
        line = reader.readline()
        if line is None:
            raise RuntimeError("program process ended")
        return json.loads(line)

    try:
        code = compile(task["code"], "<tests>", "exec")
        entry = task["entry_point"]
        names = sorted(_global_names(code) - set(dir(builtins)) | {entry})
        described = rpc({"describe": names})["names"]
        g = {"__name__": "__check__", "__builtins__": builtins}

        def proxy(name):
            def call(*args, **kwargs):
                r = rpc({"fn": name, "args": codec.encode(list(args)), "kwargs": codec.encode(kwargs)})
                if "ok" in r:
                    return codec.decode(r["ok"])
                exc = getattr(builtins, str(r.get("exc")), None)
                if not (isinstance(exc, type) and issubclass(exc, Exception)):
                    exc = RemoteError
                raise exc(f"{r.get('exc')}: {r.get('msg')}")
            call.__name__ = name
            return call

        for n, d in described.items():
            if d is None:
                continue
            if "callable" in d:
                g[n] = proxy(n)
            elif "module" in d:
                import importlib
                try:
                    g[n] = importlib.import_module(d["module"])
                except ImportError:
                    pass
            elif "value" in d:
                g[n] = codec.decode(d["value"])
        if described.get(entry) is None or "callable" not in described[entry]:
            raise NameError(f"the program defines no function {entry!r}")
        exec(code, g)
        if not callable(g.get("check")):
            raise NameError("the test code defines no check()")
        g["check"](g[entry])
    except BaseException as e:
        # A clean failure leaves the checker as it was; MemoryError, RecursionError, SystemExit, KeyboardInterrupt
        # and the like may not, so the worker replaces the checker after them.
        clean = isinstance(e, Exception) and not isinstance(e, (MemoryError, RecursionError))
        return {"verdict": "fail", "clean": clean, **_exc_info(e)}
    return {"verdict": "pass", "clean": True}


CHECKS_PER_CHECKER = 500  # a checker is replaced after this many jobs (bounds any slow growth)


def _interpreter_state() -> tuple:
    """What one job's test code could change that the next job's test code would see."""
    return (set(sys.modules), dict(vars(builtins)), sys.getrecursionlimit(), sys.gettrace(), sys.getprofile(),
            list(sys.path))


def check_server() -> int:
    """The checker: one per worker slot, kept across jobs because it never runs program code, only test code and the
    builtin values decoded from the program's replies. Each job arrives on CONTROL (a unix socket) as one JSON line
    {"token", "code", "entry_point"} with the job's two RPC pipe ends attached (SCM_RIGHTS); the verdict goes to
    REPORT tagged with the token. Every job runs in fresh globals; the checker asks to be replaced (and exits) after
    any job that changed interpreter state (imports, builtins, recursion limit, trace hooks, sys.path), ended in an
    error other than a failed check, or after CHECKS_PER_CHECKER jobs."""
    import socket
    ctl = socket.socket(fileno=CONTROL)
    baseline = _interpreter_state()
    for served in range(1, CHECKS_PER_CHECKER + 1):
        task, fds = _recv_job(ctl)
        if task is None:
            return 0
        try:
            verdict = (_run_check(task, fds[0], fds[1]) if len(fds) == 2 else
                       {"verdict": "fail", "clean": False, "exc": "ProtocolError", "msg": "expected two pipes"})
        finally:
            for fd in fds:
                os.close(fd)
        clean = verdict.pop("clean")
        recycle = served == CHECKS_PER_CHECKER or not clean or _interpreter_state() != baseline
        send(REPORT, {"token": task.get("token"), "recycle": recycle, **verdict})
        if recycle:
            return 0
    return 0


def _recv_job(ctl) -> tuple[dict | None, list[int]]:
    """One newline-terminated JSON job and the descriptors sent with it; (None, []) at EOF."""
    import socket
    buf, fds = bytearray(), []
    while not buf.endswith(b"\n"):
        data, anc, _, _ = ctl.recvmsg(1 << 16, socket.CMSG_SPACE(16))
        fds += received_fds(anc)
        if not data:
            for fd in fds:
                os.close(fd)
            return None, []
        buf += data
        if len(buf) > MAX_LINE:
            raise ValueError("message too long")
    return json.loads(buf), fds


def received_fds(ancillary) -> list[int]:
    """The descriptors passed by SCM_RIGHTS in a recvmsg's ancillary data."""
    import array
    import socket
    fds = array.array("i")
    for level, typ, data in ancillary:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    return list(fds)


def rehearse(rounds: int = 48) -> None:
    """In the zygote, before any fork: run what a program process runs (read its source, compile and load it, answer
    describe and call requests, both argument styles) on a trusted stand-in, over pipes. CPython 3.11 quickens and
    specialises bytecode in place and caches attribute lookups as code runs; done here once, a child only reads that
    state instead of writing it into pages it shares with the zygote: fewer copy-on-write page faults per program."""
    global TASK, REPORT, RPC_IN, RPC_OUT
    saved = TASK, REPORT, RPC_IN, RPC_OUT, sys.stdin
    stand_in = "import math\ndef f(x, y=1):\n    return [x, y, (x, 2.5), {'k': {x}}, None, True]\nK = [1, 2]\n"
    calls = [([3], {}), (["a"], {"y": 2}), ([[1, [2]], (3,)], {})]
    try:
        for i in range(rounds):
            plain = i % 3 == 0
            task, report, rpc_in, rpc_out = os.pipe(), os.pipe(), os.pipe(), os.pipe()
            TASK, REPORT, RPC_IN, RPC_OUT = task[0], report[1], rpc_in[0], rpc_out[1]
            os.write(task[1], encode_program(stand_in))
            os.close(task[1])
            msgs = [{"describe": ["f", "math", "K", "g"]}] + [
                {"fn": "f", "args": args if plain else codec.encode(args), "kwargs": codec.encode(kw)}
                for args, kw in calls]
            os.write(rpc_in[1], b"".join((json.dumps(m) + "\n").encode() for m in msgs))
            os.close(rpc_in[1])
            serve(plain)
            for fd in (report[1], rpc_in[0], rpc_out[1]):
                os.close(fd)
            for fd in (report[0], rpc_out[0]):
                LineReader(fd).readline()
                os.close(fd)
    finally:
        TASK, REPORT, RPC_IN, RPC_OUT, sys.stdin = saved


ROLES = {"stdio": run_stdio, "call": lambda: serve(True), "serve": lambda: serve(False), "check": check_server}


def child_main(role: str) -> None:
    """Never returns. Exits with os._exit so no inherited atexit/finally of the service runs in the child."""
    code = 1
    try:
        code = ROLES[role]()
    except BaseException as e:
        try:
            if isinstance(e, MemoryError):
                send(REPORT, {"exc": "MemoryError", "memory": True})
            traceback.print_exc()
        except BaseException:
            pass
    try:
        sys.stdout.flush()
    except BaseException:
        pass
    os._exit(code if isinstance(code, int) else 1)
