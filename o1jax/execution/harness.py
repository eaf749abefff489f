"""What runs inside a sandboxed process, after `enter_job_sandbox` and before/around the untrusted program.

Fixed descriptors: 0 stdin, 1 stdout, 2 stderr, 3 TASK (read; a stdio program's source, sent only after the fork, so
the zygote never holds any job's data), 4 REPORT (write; to the worker), 5 RPC_IN, 6 RPC_OUT (call and assert kinds).
Nothing a program process writes is taken as proof of passing: the worker (stdio, call) or a separate checker process
that never runs program code (assert) decides.

The RPC wire: requests into a program process are marshal frames (a 4-byte length, then marshal data), written only
by trusted processes (worker, checker); replies out of it are JSON lines, the one format those trusted processes
parse from an untrusted sender (marshal is not safe to load from one).
"""
from __future__ import annotations

import array
import builtins
import io
import json
import json.scanner
import marshal
import os
import socket
import sys
import traceback
import types

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


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not a new one per message
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner behind json.loads, without its wrappers


def parse_reply(line: bytes):
    """One JSON line from a program process, as json.loads would read it but with no whitespace around it (replies
    are compact): a dozen per HumanEval job, so the checker skips json.loads' encoding detection and regexes. Any
    malformed line raises ValueError."""
    text = line.decode("utf-8")
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        raise ValueError("malformed reply") from None
    if end != len(text):
        raise ValueError("malformed reply")
    return value


def send(fd: int, msg: dict) -> None:
    """One JSON line (every message a program process or checker sends to a trusted reader)."""
    _write_all(fd, (_ENCODE(msg) + "\n").encode())


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def frame(obj) -> bytes:
    """One marshal frame for a program process (from a trusted sender only). Raises ValueError for a value marshal
    cannot carry (only builtin data types and code objects cross)."""
    data = marshal.dumps(obj)
    return len(data).to_bytes(4, "little") + data


def send_frame(fd: int, obj) -> None:
    _write_all(fd, frame(obj))


class FrameReader:
    """A program process's side of send_frame."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, bytearray()

    def read(self):
        """The next frame's value, or None at EOF."""
        while True:
            if len(self.buf) >= 4:
                end = 4 + int.from_bytes(self.buf[:4], "little")
                if len(self.buf) >= end:
                    data = bytes(self.buf[4:end])
                    del self.buf[:end]
                    return marshal.loads(data)
                want = end - len(self.buf)
            else:
                want = 1 << 16
            chunk = os.read(self.fd, max(want, 1 << 16))
            if not chunk:
                return None
            self.buf += chunk


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


def compile_program(src: str):
    """The program's code object, compiled as `python program.py` would (no __future__ flag of ours leaks in).
    Raises SyntaxError, ValueError (null bytes), MemoryError, RecursionError, OverflowError."""
    return compile(src, "<program>", "exec", dont_inherit=True)


def _compile_and_load(program, name: str) -> dict | None:
    """Run the module body of `program`: source (compiled here; compiled true/false reported to the worker) or a code
    object the checker compiled (it reports compile failures). An import failure also means compiled = false.
    Returns the module globals, or None after reporting a failure."""
    if type(program) is str:
        try:
            code = compile_program(program)
        except BaseException as e:
            send(REPORT, {"compiled": False, **_exc_info(e)})
            return None
        os.write(REPORT, _COMPILED)
    elif type(program) is types.CodeType:
        code = program
    else:
        send(REPORT, {"phase": "load", "exc": "ProtocolError", "msg": "no program"})
        return None
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


def serve() -> int:
    """The call and assert kinds' program process. The first frame on RPC_IN is (program, names): the program's
    source, or the code object the checker compiled, and the names the test code uses (answered at once, on RPC_OUT,
    after the module body ran); then ("call", name, args, kwargs) requests until EOF. Replies are JSON lines; values
    travel codec-encoded."""
    sys.stdin = io.StringIO("")
    frames = FrameReader(RPC_IN)
    first = frames.read()
    if first is None:  # the checker found nothing to run (a compile error): nothing to report
        return 0
    program, names = first
    g = _compile_and_load(program, "__program__")
    if g is None:
        return 1
    if names:
        send(RPC_OUT, {"names": _describe(g, names)})
    while True:
        req = frames.read()
        if req is None:
            return 0
        _, name, args, kwargs = req
        fn = _resolve(g, name)
        try:
            if fn is None:
                raise NameError(f"name {name!r} is not defined")
            value = fn(*args, **kwargs)
            reply = {"ok": codec.encode(value)}
        except BaseException as e:  # the program's exception is data for the judge, never a verdict
            reply = _exc_info(e)
            if isinstance(e, MemoryError):
                reply["memory"] = True
        sys.stdout.flush()
        send(RPC_OUT, reply)


def _describe(g: dict, names: list[str]) -> dict:
    """What the checker may know of the program's globals the test code names: None (absent), a module's name, that
    it is callable (the checker gets a proxy), or its value, codec-encoded (fresh builtins on the other side)."""
    out = {}
    for n in names:
        v = g.get(n)
        if n not in g:
            out[n] = None
        elif type(v).__name__ == "module":
            out[n] = {"module": v.__name__}
        elif callable(v):
            out[n] = {"callable": True}
        else:
            try:
                out[n] = {"value": codec.encode(v)}
            except (TypeError, ValueError):
                out[n] = None
    return out


def _global_names(code) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if hasattr(c, "co_names"):
            names |= _global_names(c)
    return names


class RemoteError(Exception):
    """The program raised inside a call; re-raised in the checker as a plain builtin exception."""


def _run_check(task: dict, rpc_in: int, rpc_out: int) -> dict:
    """One job: compile the program (a compile failure is this job's verdict) and send its code object to the program
    process with the names the test code uses (it answers what they are), then run the test code (HumanEval
    `check(candidate)`) with `candidate` and any program-defined helper replaced by proxies that call into the program
    process (over rpc_out/rpc_in) and get back decoded builtin values. The checker never executes a byte of the
    program, so nothing the program does (patched builtins, sys.exit, a forged __eq__, writes to any fd) can make
    check() return. Returns the verdict: pass only when check() returned."""
    reader = LineReader(rpc_in)

    def rpc(req):
        send_frame(rpc_out, req)
        line = reader.readline()
        if line is None:
            raise RuntimeError("program process ended")
        return parse_reply(line)

    try:
        try:
            program = compile_program(task["program"])
        except BaseException as e:
            return {"verdict": "fail", "compiled": False, "clean": _clean(e), **_exc_info(e)}
        code, names = _test_code(task["code"])
        entry = task["entry_point"]
        described = rpc((program, sorted(names | {entry})))["names"]
        g = {"__name__": "__check__", "__builtins__": builtins}

        def proxy(name):
            def call(*args, **kwargs):
                r = rpc(("call", name, list(args), kwargs))
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
        return {"verdict": "fail", "clean": _clean(e), **_exc_info(e)}
    return {"verdict": "pass", "clean": True}


def _clean(e: BaseException) -> bool:
    """A clean failure leaves the checker as it was; MemoryError, RecursionError, SystemExit, KeyboardInterrupt and
    the like may not, so the worker replaces the checker after them."""
    return isinstance(e, Exception) and not isinstance(e, (MemoryError, RecursionError))


_TESTS: dict[str, tuple] = {}  # test source -> (code, the global names it uses): jobs repeat tests (RL, pass@k)
TESTS_CACHED, TEST_CACHE_MAX_CHARS = 256, 1 << 18


def _test_code(src: str) -> tuple:
    """The test code compiled, and the non-builtin global names it refers to (asked of the program process).
    Compiled once per distinct test source per checker (code objects are immutable: every job still execs it in
    fresh globals)."""
    hit = _TESTS.get(src)
    if hit is None:
        code = compile(src, "<tests>", "exec", dont_inherit=True)
        hit = code, frozenset(_global_names(code) - set(dir(builtins)))
        if len(src) <= TEST_CACHE_MAX_CHARS:
            if len(_TESTS) >= TESTS_CACHED:
                del _TESTS[next(iter(_TESTS))]  # the oldest
            _TESTS[src] = hit
    return hit


CHECKS_PER_CHECKER = 500  # a checker is replaced after this many jobs (bounds any slow growth)


def _interpreter_state() -> tuple:
    """What one job's test code could change that the next job's test code would see."""
    return (set(sys.modules), dict(vars(builtins)), sys.getrecursionlimit(), sys.gettrace(), sys.getprofile(),
            list(sys.path))


def check_server() -> int:
    """The checker: one per worker slot, kept across jobs because it never runs program code, only test code and the
    builtin values decoded from the program's replies (it compiles the program, which runs none of it). Each job
    arrives on CONTROL (a unix socket) as one JSON line {"token", "program", "code", "entry_point"} with the job's two
    RPC pipe ends attached (SCM_RIGHTS); the verdict goes to REPORT tagged with the token. Every job runs in fresh
    globals; the checker asks to be replaced (and exits) after any job that changed interpreter state (imports,
    builtins, recursion limit, trace hooks, sys.path), ended in an error other than a failed check, or after
    CHECKS_PER_CHECKER jobs."""
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
    fds = array.array("i")
    for level, typ, data in ancillary:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    return list(fds)


def rehearse(rounds: int = 48) -> None:
    """In the zygote, before any fork: run what a program process runs (read its program, as source and as a code
    object, load it, describe names, answer calls) on a trusted stand-in, over pipes. CPython 3.11 quickens and
    specialises bytecode in place and caches attribute lookups as code runs; done here once, a child only reads that
    state instead of writing it into pages it shares with the zygote: fewer copy-on-write page faults per program."""
    global REPORT, RPC_IN, RPC_OUT
    saved = REPORT, RPC_IN, RPC_OUT, sys.stdin
    stand_in = "import math\ndef f(x, y=1):\n    return [x, y, (x, 2.5), {'k': {x}}, None, True]\nK = [1, 2]\n"
    reqs = [("call", "f", [3], {}), ("call", "f", ["a"], {"y": 2}), ("call", "f", [[1, [2]], (3,)], {})]
    try:
        for i in range(rounds):
            report, rpc_in, rpc_out = os.pipe(), os.pipe(), os.pipe()
            REPORT, RPC_IN, RPC_OUT = report[1], rpc_in[0], rpc_out[1]
            names = ["f", "math", "K", "g"] if i % 3 else []
            send_frame(rpc_in[1], (stand_in if i % 2 else compile_program(stand_in), names))
            for req in reqs:
                send_frame(rpc_in[1], req)
            os.close(rpc_in[1])
            serve()
            for fd in (report[1], rpc_in[0], rpc_out[1]):
                os.close(fd)
            for fd in (report[0], rpc_out[0]):
                LineReader(fd).readline()
                os.close(fd)
    finally:
        REPORT, RPC_IN, RPC_OUT, sys.stdin = saved


ROLES = {"stdio": run_stdio, "serve": serve, "check": check_server}


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
