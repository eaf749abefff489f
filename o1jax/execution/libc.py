"""The few libc calls the execution service needs that Python's os module lacks (unshare, mount, prctl, a clone with
namespace flags), through the C extension `_zygote` (_zygote.c, built by pip install) where it was built, else
through ctypes. With the extension the service never imports ctypes, so no zygote or program process maps it.

`native` is the extension, or None: not built (no C compiler at install time), built from another version of
_zygote.c, or switched off with O1JAX_ZYGOTE=python in the service's environment (what ExecutionService passes on).
"""
from __future__ import annotations

import _thread
import os
import signal

ABI = 3  # bump with any change to _zygote.c's functions: a stale build is then left unused, not misused


def _load():
    if os.environ.get("O1JAX_ZYGOTE") == "python":
        return None
    try:
        from o1jax.execution import _zygote
    except ImportError:
        return None
    return _zygote if getattr(_zygote, "ABI", None) == ABI else None


native = _load()

if native is None:
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.syscall.restype = ctypes.c_long
    _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    _clone_holding_gil = ctypes.PyDLL(None, use_errno=True).syscall  # a PyDLL call keeps the GIL, as os.fork does
    _clone_holding_gil.restype = ctypes.c_long
    _CLONE = {"x86_64": 56, "aarch64": 220, "ppc64le": 120, "s390x": 120}.get(os.uname().machine, 56)

    def _check(ret: int) -> int:
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return ret

    def _enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()


def unshare(flags: int) -> None:
    if native is not None:
        return native.unshare(flags)
    _check(_libc.unshare(flags))


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if native is not None:
        return native.mount(src, target, fstype, flags, data)
    _check(_libc.mount(_enc(src), _enc(target), _enc(fstype), flags, _enc(data)))


def umount2(target: str, flags: int) -> None:
    if native is not None:
        return native.umount2(target, flags)
    _check(_libc.umount2(target.encode(), flags))


def prctl(option: int, arg: int = 0) -> None:
    if native is not None:
        return native.prctl(option, arg)
    _check(_libc.prctl(option, arg, 0, 0, 0))


def malloc_trim() -> None:
    """Return free malloc memory to the kernel (glibc; a no-op elsewhere)."""
    if native is not None:
        return native.malloc_trim()
    try:
        _libc.malloc_trim(0)
    except AttributeError:
        pass


def clone_process(flags: int) -> int:
    """fork() with namespace flags (a fork that can start a new PID namespace each time, unlike unshare).
    Returns 0 in the child, like os.fork. Only for single-threaded callers (the zygote, the probe).

    The GIL is held across the clone and no other thread exists, so the child's interpreter state is already
    consistent: CPython's after-fork reinitialisation (other threads' locks, thread states, at-fork hooks) has
    nothing to repair and is skipped. It cost ~0.2 ms and ~70 copy-on-write page faults per child. Its one hook that
    matters here, re-seeding `random`, the zygote's child does itself."""
    threaded = _thread._count() > 0
    if native is not None:
        return native.clone(flags, threaded)
    pid = _check(_clone_holding_gil(_CLONE, flags | signal.SIGCHLD, 0, 0, 0, 0))
    if pid == 0 and threaded:
        ctypes.pythonapi.PyOS_AfterFork_Child()
    return pid
