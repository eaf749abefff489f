"""Kernel-level isolation for the execution service: namespaces, mounts, rlimits, uids.

Two layers. `enter_service_namespaces` runs once, in the service process, before any job: it gives the whole service
an empty network namespace, a private mount namespace (every mount read-only, a private tmpfs on /tmp for job
directories), its own IPC and PID namespaces (so /proc shows only the service). `enter_job_sandbox` runs in each
freshly cloned program process (the init of its own PID namespace): session, rlimits, unprivileged uid, clean env.
No JAX here, and nothing heavier than the standard library.
"""
from __future__ import annotations

import os
import resource
import signal
import sys
from dataclasses import dataclass, field

from o1jax.execution import libc
from o1jax.execution.libc import clone_process, mount, prctl, unshare  # noqa: F401  (sandbox.clone_process & co.)

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38

JOB_ROOT = "/tmp"          # inside the service's mount namespace: a private tmpfs, mode 0711
UID_BASE = 60000           # root mode: program uid = UID_BASE + 2*slot, checker uid = that + 1


@dataclass
class Capabilities:
    """What this host lets the service enforce. `missing` lists the protections it cannot give."""
    root: bool
    userns: bool = False       # unprivileged user namespaces (needed when not root)
    namespaces: bool = False   # net+mount+ipc+pid namespaces for the service and a PID namespace per job
    missing: list[str] = field(default_factory=list)
    # Set by enter_service_namespaces: no SysV or POSIX-mqueue object can be made in the service's IPC namespace, so
    # jobs need no IPC namespace of their own.
    ipc_closed: bool = False

    @property
    def job_clone_flags(self) -> int:
        """Namespaces each program process gets: its own PID namespace (killing its init kills everything the job
        started) and, unless IPC objects are closed service-wide, its own IPC namespace (SysV objects outlive their
        process: one job's must not be there for the next). A per-job IPC namespace costs ~35 us of CPU per job."""
        if not self.namespaces:
            return 0
        return CLONE_NEWPID | (0 if self.ipc_closed else CLONE_NEWIPC)

    @property
    def full(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        if self.full:
            return "sandbox: full isolation (" + ("root: per-slot uids" if self.root else "user namespaces") + ")"
        return ("sandbox: WEAKER isolation on this host; missing: " + "; ".join(self.missing))


def _probe_child(flags: int) -> bool:
    """Try the namespace setup in a throwaway child; True if it worked."""
    pid = os.fork()
    if pid == 0:
        try:
            if flags & CLONE_NEWUSER:
                _setup_userns(os.getuid(), os.getgid(), flags)
            else:
                unshare(flags)
            mount("none", "/", None, MS_REC | MS_PRIVATE)
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0711,size=16k")
            child = os.fork()  # init of the new PID namespace
            if child == 0:
                grandchild = clone_process(CLONE_NEWPID | CLONE_NEWIPC)  # what the zygote does per job
                if grandchild == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                _, st = os.waitpid(grandchild, 0)
                os._exit(0 if os.getpid() == 1 and st == 0 else 1)
            _, st = os.waitpid(child, 0)
            os._exit(0 if st == 0 else 1)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return status == 0


def probe() -> Capabilities:
    root = os.geteuid() == 0
    caps = Capabilities(root=root)
    base = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID
    if root:
        caps.namespaces = _probe_child(base)
    else:
        caps.userns = caps.namespaces = _probe_child(base | CLONE_NEWUSER)
    if not caps.namespaces:
        caps.missing += ["network namespace (programs can open connections)",
                         "read-only filesystem (programs can write files the service user can write)",
                         "PID namespace per job (escaped background children are killed by process group only)",
                         "private /proc (programs can see other processes)"]
    if not root:
        caps.missing.append("separate uid for programs (programs run as the service user; "
                            "RLIMIT_NPROC counts all of that user's processes)" if not caps.userns else
                            "separate uid for programs (programs and checker share the service uid inside a "
                            "user namespace; checker is made non-dumpable instead)")
        if caps.userns:
            caps.missing.pop()  # a user namespace with dropped capabilities is the accepted non-root design
            if not _nproc_per_userns():
                caps.missing.append("process-count limit (before Linux 5.14 RLIMIT_NPROC counts every process of "
                                    "the service's user, so it cannot bound one program; a fork bomb is stopped only "
                                    "by the wall-clock limit)")
    return caps


def _nproc_per_userns() -> bool:
    """Linux 5.14+ counts RLIMIT_NPROC per (user namespace, uid), so a limit set inside a program's own user
    namespace bounds that program's processes only."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def _setup_userns(uid: int, gid: int, flags: int) -> None:
    unshare(flags)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def enter_service_namespaces(caps: Capabilities, tmpfs_size: str = "4g") -> None:
    """Called once by the service process. Afterwards the caller must clone_process(CLONE_NEWPID) and continue in the
    child (the init of the new PID namespace) to get a private /proc."""
    if not caps.namespaces:
        return
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID
    if caps.root:
        unshare(flags)
    else:
        _setup_userns(os.getuid(), os.getgid(), flags | CLONE_NEWUSER)
    caps.ipc_closed = close_ipc()
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    # The interpreter, a venv or this checkout may live under JOB_ROOT (a clone in /tmp, say): keep a handle on the
    # host directory, cover it with the job tmpfs, then bind back just the entries the service needs (read-only
    # later, like every mount but the tmpfs).
    keep = sorted({p.split("/", 1)[0] for p in (os.path.relpath(q, JOB_ROOT) for q in _service_paths())
                   if p != "." and not p.startswith("..")})
    host_root = os.open(JOB_ROOT, os.O_PATH | os.O_DIRECTORY) if keep else -1
    mount("tmpfs", JOB_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0711,size={tmpfs_size}")
    for name in keep:
        src = f"/proc/self/fd/{host_root}/{name}"
        dst = os.path.join(JOB_ROOT, name)
        if os.path.isdir(src):
            os.mkdir(dst, 0o755)
        else:
            open(dst, "w").close()
        mount(src, dst, None, MS_BIND | MS_REC)
    if host_root >= 0:
        os.close(host_root)


# In the service's own IPC namespace: room for no SysV shared-memory segment, semaphore set or message queue, and no
# POSIX message queue (these limits are per IPC namespace; creating one then fails with ENOSPC).
IPC_LIMITS = {"kernel/shmmni": "0", "kernel/msgmni": "0", "fs/mqueue/queues_max": "0"}


def close_ipc() -> bool:
    """Forbid IPC objects in the (new, empty) IPC namespace of the calling process. False where the host does not let
    us (writing these sysctls from a user namespace needs Linux 5.19 or so): jobs then get IPC namespaces of their
    own instead. Only ever called right after unshare(CLONE_NEWIPC)."""
    try:
        with open("/proc/sys/kernel/sem") as f:
            sem = f.read().split()
        limits = {**IPC_LIMITS, "kernel/sem": " ".join(sem[:3] + ["0"])}  # SEMMSL SEMMNS SEMOPM SEMMNI
        for key, value in limits.items():
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)
        for key, value in limits.items():
            with open(f"/proc/sys/{key}") as f:
                if f.read().split() != value.split():
                    return False
    except (OSError, ValueError):
        return False
    return True


def _service_paths() -> set[str]:
    """Real paths the service and its programs must see: the interpreter, its sys.path, the o1jax package."""
    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
             os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    return {os.path.realpath(p) for p in paths}


def finish_service_mounts(caps: Capabilities) -> None:
    """In the service's PID-namespace init: mount a /proc that shows only the service, then make every mount except
    the job tmpfs read-only, so a program can change no file outside its own directory."""
    if not caps.namespaces:
        return
    expose_interpreter()
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # keep the host /proc; programs still cannot read other uids' environ
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    for mp in points:
        if mp == JOB_ROOT or (mp == "/proc" and not caps.root):
            # Not root: every program enters a nested user namespace, which means writing its own
            # /proc/self/{setgroups,uid_map,gid_map}. Nothing else there is writable for it: it holds no capability
            # outside that empty namespace (sysctls belong to the service's or the host's namespaces).
            continue
        try:
            st = os.statvfs(mp)
        except OSError:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= MS_NOSUID if st.f_flag & os.ST_NOSUID else 0
        flags |= MS_NODEV if st.f_flag & os.ST_NODEV else 0
        flags |= MS_NOEXEC if st.f_flag & os.ST_NOEXEC else 0
        try:
            mount(None, mp, None, flags)
        except OSError:
            pass  # a few pseudo filesystems refuse; they hold nothing a program could change usefully


def _blocked_ancestor(path: str) -> str | None:
    """The first directory on the way to path that other users cannot enter, if any."""
    cur = "/"
    for part in path.strip("/").split("/"):
        if not os.stat(cur).st_mode & 0o001:
            return cur
        cur = os.path.join(cur, part)
    return None


def expose_interpreter() -> None:
    """Programs run as an unprivileged uid but need the interpreter's files, which may sit under a private home
    (/root/.pyenv, say). In the service's mount namespace only, cover the private directory with an empty tmpfs and
    bind back just the subtree we need: the rest of that home stays invisible to programs."""
    for path in sorted(_service_paths()):
        for _ in range(8):
            blocked = _blocked_ancestor(path)
            if blocked is None or blocked == path:
                break
            child = path[len(blocked):].strip("/").split("/")[0]
            src = os.path.join(blocked, child)
            stash = os.path.join(JOB_ROOT, f".expose-{os.getpid()}")
            os.mkdir(stash)
            mount(src, stash, None, MS_BIND | MS_REC)
            mount("tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            if os.path.isdir(stash):
                os.mkdir(src)
            else:
                open(src, "w").close()
            mount(stash, src, None, MS_BIND | MS_REC)
            libc.umount2(stash, 2)  # MNT_DETACH
            os.rmdir(stash)


@dataclass
class Limits:
    cpu_s: int
    memory_mb: int
    fsize_mb: int = 16
    nofile: int = 64
    nproc: int = 32


def trim_heap() -> None:
    """Return free malloc memory to the kernel (glibc malloc_trim; ~0.9 MB of the zygote's ~11 MB). No-op elsewhere."""
    libc.malloc_trim()


def vm_size_bytes() -> int:
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        return int(os.read(fd, 256).split()[0]) * os.sysconf("SC_PAGE_SIZE")
    finally:
        os.close(fd)


JOB_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}


def scrub_environment(home: str) -> None:
    """Once, in the zygote: the environment every program starts from, HOME and TMPDIR its slot's job directory
    (and no bytecode written by imports)."""
    os.environ.clear()
    os.environ.update(JOB_ENV)
    os.environ["HOME"] = os.environ["TMPDIR"] = home
    sys.dont_write_bytecode = True  # no program's import leaves a .pyc behind


def _close_all_but(keep: set[int]) -> None:
    """close_range(2) over every gap between the descriptors we keep: one syscall per gap, no /proc walk."""
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


PRIVATE_TMP = "size=64m,nr_inodes=4096"  # the tmpfs of one process's own JOB_ROOT when not root


def _private_workdir(workdir: str) -> None:
    """Not root, every program and checker runs as the service's one uid, so file permissions cannot keep one job out
    of another's directory (an owner may chmod and delete). Instead each process gets its own mount namespace with a
    fresh tmpfs over JOB_ROOT that holds nothing but its working directory, then a second, nested user namespace: its
    copy of those mounts is locked, so the tmpfs cannot be unmounted to reveal JOB_ROOT, and it holds no capability
    over anything of the service's (mounts, namespaces, files)."""
    _setup_userns(0, 0, CLONE_NEWUSER | CLONE_NEWNS)
    mount("tmpfs", JOB_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0711," + PRIVATE_TMP)
    os.mkdir(workdir, 0o700)
    _setup_userns(0, 0, CLONE_NEWUSER | CLONE_NEWNS)


def enter_zygote_limits(caps: Capabilities, preset: Limits) -> None:
    """Once, in the zygote: what every sandboxed process gets anyway, so its children inherit it instead of each
    setting it (no new privileges, no core dumps, file-size, open-file and, as root, process-count limits). None of
    it restricts the zygote itself: it writes no files, holds a handful of descriptors and, as root, RLIMIT_NPROC does
    not apply to it (it binds a child once the child takes its unprivileged uid)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    rl = resource
    rl.setrlimit(rl.RLIMIT_CORE, (0, 0))
    rl.setrlimit(rl.RLIMIT_FSIZE, (preset.fsize_mb << 20,) * 2)
    rl.setrlimit(rl.RLIMIT_NOFILE, (preset.nofile,) * 2)
    if caps.root:
        rl.setrlimit(rl.RLIMIT_NPROC, (preset.nproc,) * 2)


def enter_job_sandbox(caps: Capabilities, uid: int | None, workdir: str, limits: Limits,
                      keep_fds: tuple[int, ...], vm_base: int, preset: Limits, checker: bool = False) -> None:
    """In a process freshly cloned by the zygote, before any job data arrives: lose every privilege, then limit
    resources. It inherits what enter_zygote_limits set with `preset` (no new privileges, no core dumps, those
    limits) and the zygote's job environment; only this job's differences are set here. vm_base: the zygote's
    address-space size (measured there, so the child does not have to open /proc); the memory limit is relative to
    it. The zygote's C loop (_zygote.c, enter_sandbox) does these same steps in the same order: change both."""
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _close_all_but(set(keep_fds) | {0, 1, 2})  # every inherited descriptor we did not pass on purpose
    shared_uid = caps.namespaces and not caps.root
    if shared_uid:
        _private_workdir(workdir)
    elif caps.root and uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setresuid(uid, uid, uid)
    os.chdir(workdir)
    rl = resource
    if checker or shared_uid:
        # Processes sharing one uid could otherwise read and write each other's memory (/proc/PID/mem, ptrace).
        prctl(PR_SET_DUMPABLE, 0)
    if limits.cpu_s:  # 0: none (the long-lived checker; the worker's wall-clock limit still applies per job)
        rl.setrlimit(rl.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    if preset.fsize_mb != limits.fsize_mb:
        rl.setrlimit(rl.RLIMIT_FSIZE, (limits.fsize_mb << 20,) * 2)
    if preset.nofile != limits.nofile:
        rl.setrlimit(rl.RLIMIT_NOFILE, (limits.nofile,) * 2)
    if shared_uid or (caps.root and preset.nproc != limits.nproc):
        # root: counted per unprivileged uid; not root: per this process's own user namespace (see probe)
        rl.setrlimit(rl.RLIMIT_NPROC, (limits.nproc,) * 2)
    # Memory is relative to what this interpreter already maps, so the limit means the same on every host.
    mem = vm_base + (limits.memory_mb << 20)
    rl.setrlimit(rl.RLIMIT_AS, (mem, mem))
