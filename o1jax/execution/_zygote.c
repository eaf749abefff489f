/* The zygote's fork loop in C, and the few libc calls the service needs that Python's os module lacks (libc.py).
 * Optional: where this did not build, zygote.serve_python and ctypes do the same work.
 *
 * Why C: after every fork the zygote's memory is shared, copy-on-write, with the new program process. A Python loop
 * writes ~115 pages of it per job (every object it touches gets a reference-count write), each a page copy while
 * the child lives. This loop writes only its own stack and a small table, and never runs the interpreter, so the
 * zygote's Python heap stays exactly as the warm-up left it.
 *
 * serve(sock, own, flags, remeasure, policy) serves spawn requests on the SOCK_SEQPACKET socket `sock` (wire format
 * in zygote.py). In the parent it never returns (it exits when the worker closes its end). In each child it first
 * enters the job sandbox, step for step what sandbox.enter_job_sandbox does (the child's Python would otherwise
 * copy ~50 pages of the zygote doing it), then returns (role, workdir) with the job's descriptors on their numbers.
 *   own: the zygote's own descriptors for 0..6, put back after every clone;
 *   flags: clone flags (Capabilities.job_clone_flags);
 *   remeasure: forks between measurements of the address-space size (/proc/self/statm);
 *   policy: (root, namespaces, preset fsize_mb, preset nofile, preset nproc, JOB_ROOT, PRIVATE_TMP): the host's
 *           capabilities and the limits every child already inherits (zygote.PRESET), as enter_job_sandbox gets them.
 * A child whose sandbox setup fails says so on its stderr and exits 121, as the Python loop's child does.
 * The GIL stays held throughout: the zygote has no other thread, so a child's interpreter is consistent as cloned
 * (CPython's after-fork reinitialisation has nothing to repair, as in libc.clone_process).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <malloc.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_NEWUSER
#define CLONE_NEWUSER 0x10000000
#endif

#define LOW 7          /* a child's fixed descriptors 0..6 */
#define MAX_FDS 8      /* descriptors per request */
#define MAX_CHILDREN 256
#define MSG 4096

typedef struct {
    pid_t pid;
    int pidfd;  /* -1: no pidfd (kernel before 5.3): polled with waitpid(WNOHANG) */
} child_t;

static child_t children[MAX_CHILDREN];
static int n_children;

static void send_text(int sock, const char *text, int fd) {
    struct iovec iov = {(void *)text, strlen(text)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        memset(&u, 0, sizeof u);
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void report_exit(int sock, int i) {
    int status = 0;
    while (waitpid(children[i].pid, &status, 0) < 0 && errno == EINTR) {
    }
    char text[64];
    snprintf(text, sizeof text, "x %d %d", (int)children[i].pid, status);
    send_text(sock, text, -1);
    if (children[i].pidfd >= 0) close(children[i].pidfd);
    children[i] = children[--n_children];
}

static long vm_size(void) {
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return strtol(buf, NULL, 10) * sysconf(_SC_PAGESIZE);
}

/* Split "TOKEN ROLE UID CPU_S MEMORY_MB FSIZE_MB NOFILE NPROC FD,FD,... WORKDIR" in place. */
typedef struct {
    char *token, *role, *uid, *workdir;
    long ints[5];
    int targets[MAX_FDS];
    int n_targets;
} request_t;

static const char *parse(char *text, request_t *r) {
    char *field[10];
    char *p = text;
    for (int i = 0; i < 9; i++) {
        field[i] = p;
        p = strchr(p, ' ');
        if (!p) return "malformed request";
        *p++ = 0;
    }
    field[9] = p;
    r->token = field[0];
    r->role = field[1];
    r->uid = field[2];
    r->workdir = field[9];
    for (int i = 0; i < 5; i++) {
        char *end;
        errno = 0;
        r->ints[i] = strtol(field[3 + i], &end, 10);
        if (errno || end == field[3 + i] || *end) return "malformed limit";
    }
    r->n_targets = 0;
    for (char *t = field[8]; *t;) {
        char *end;
        long v = strtol(t, &end, 10);
        if (end == t || v < 0 || v >= LOW || r->n_targets == MAX_FDS) return "descriptors do not match their targets";
        r->targets[r->n_targets++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return "descriptors do not match their targets";
        t = end;
    }
    if (strcmp(r->uid, "-") != 0) {
        char *end;
        errno = 0;
        strtol(r->uid, &end, 10);
        if (errno || end == r->uid || *end) return "malformed uid";
    }
    return NULL;
}

/* ---- the child's way into its sandbox (sandbox.enter_job_sandbox, in C) ---- */

typedef struct {
    int root, namespaces;
    long fsize_mb, nofile, nproc;  /* the preset every child inherits from the zygote */
    char job_root[256], private_tmp[256];
} policy_t;

static void fail(const char *step) {
    char text[256];
    int n = snprintf(text, sizeof text, "sandbox setup failed: %s: %s\n", step, strerror(errno));
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof text) n = sizeof text - 1;  /* snprintf counts what did not fit */
    if (write(2, text, (size_t)n) < 0) {
    }
    _exit(121);
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) fail(path);
    close(fd);
}

static void setup_userns(int flags) {  /* sandbox._setup_userns(0, 0, flags) */
    if (unshare(flags) < 0) fail("unshare");
    write_file("/proc/self/setgroups", "deny");
    write_file("/proc/self/uid_map", "0 0 1");
    write_file("/proc/self/gid_map", "0 0 1");
}

static void close_all_but(const int *keep, int n_keep) {  /* sandbox._close_all_but over keep + {0, 1, 2} */
    int fds[MAX_FDS + 3], n = 0;
    for (int i = 0; i < 3; i++) fds[n++] = i;
    for (int i = 0; i < n_keep; i++) fds[n++] = keep[i];
    for (int i = 1; i < n; i++) {  /* insertion sort: a handful of numbers */
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    }
    unsigned int low = 0;
    for (int i = 0; i <= n; i++) {
        unsigned int high = i < n ? (unsigned int)fds[i] : ~0U;
        if (high > low && syscall(SYS_close_range, low, high - 1, 0) < 0) {
            if (errno != ENOSYS) fail("close_range");
            for (unsigned int fd = low; fd < high && fd < 65536; fd++) close((int)fd);
        }
        if (i < n) low = (unsigned int)fds[i] + 1;
    }
}

static void set_limit(int resource, rlim_t soft, rlim_t hard, const char *step) {
    struct rlimit rl = {soft, hard};
    if (setrlimit(resource, &rl) < 0) fail(step);
}

static void enter_sandbox(const request_t *r, const policy_t *p, long vm_base) {
    long cpu_s = r->ints[0], memory_mb = r->ints[1], fsize_mb = r->ints[2], nofile = r->ints[3], nproc = r->ints[4];
    int checker = strcmp(r->role, "check") == 0;
    int has_uid = strcmp(r->uid, "-") != 0;
    if (setsid() < 0) fail("setsid");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail("PR_SET_PDEATHSIG");
    close_all_but(r->targets, r->n_targets);
    int shared_uid = p->namespaces && !p->root;
    if (shared_uid) {  /* sandbox._private_workdir */
        setup_userns(CLONE_NEWUSER | CLONE_NEWNS);
        char opts[300];
        snprintf(opts, sizeof opts, "mode=0711,%s", p->private_tmp);
        if (mount("tmpfs", p->job_root, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) fail("mount");
        if (mkdir(r->workdir, 0700) < 0) fail("mkdir");
        setup_userns(CLONE_NEWUSER | CLONE_NEWNS);
    } else if (p->root && has_uid) {
        uid_t uid = (uid_t)strtol(r->uid, NULL, 10);
        if (setgroups(0, NULL) < 0) fail("setgroups");
        if (setgid((gid_t)uid) < 0) fail("setgid");
        if (setresuid(uid, uid, uid) < 0) fail("setresuid");
    }
    if (chdir(r->workdir) < 0) fail("chdir");
    if ((checker || shared_uid) && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) fail("PR_SET_DUMPABLE");
    if (cpu_s) set_limit(RLIMIT_CPU, (rlim_t)cpu_s, (rlim_t)cpu_s + 1, "RLIMIT_CPU");
    rlim_t fsize = (rlim_t)fsize_mb << 20;
    if (p->fsize_mb != fsize_mb) set_limit(RLIMIT_FSIZE, fsize, fsize, "RLIMIT_FSIZE");
    if (p->nofile != nofile) set_limit(RLIMIT_NOFILE, (rlim_t)nofile, (rlim_t)nofile, "RLIMIT_NOFILE");
    if (shared_uid || (p->root && p->nproc != nproc)) {  /* root: per unprivileged uid; else per own user ns */
        set_limit(RLIMIT_NPROC, (rlim_t)nproc, (rlim_t)nproc, "RLIMIT_NPROC");
    }
    rlim_t mem = (rlim_t)vm_base + ((rlim_t)memory_mb << 20);
    set_limit(RLIMIT_AS, mem, mem, "RLIMIT_AS");
}

static PyObject *serve(PyObject *self, PyObject *args) {
    (void)self;
    int sock, remeasure;
    unsigned long flags;
    PyObject *own_obj;
    policy_t policy;
    const char *job_root, *private_tmp;
    if (!PyArg_ParseTuple(args, "iOki(pplllss)", &sock, &own_obj, &flags, &remeasure, &policy.root,
                          &policy.namespaces, &policy.fsize_mb, &policy.nofile, &policy.nproc, &job_root,
                          &private_tmp)) {
        return NULL;
    }
    if (strlen(job_root) >= sizeof policy.job_root || strlen(private_tmp) >= sizeof policy.private_tmp) {
        PyErr_SetString(PyExc_ValueError, "policy: path or options too long");
        return NULL;
    }
    strcpy(policy.job_root, job_root);
    strcpy(policy.private_tmp, private_tmp);
    int own[LOW];
    PyObject *seq = PySequence_Fast(own_obj, "own must be a sequence");
    if (!seq) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != LOW) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "own: one descriptor for each of 0..6");
        return NULL;
    }
    for (int i = 0; i < LOW; i++) own[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
    Py_DECREF(seq);
    if (PyErr_Occurred()) return NULL;
    if (remeasure < 1) remeasure = 1;

    long vm_base = 0;
    unsigned long forks = 0;
    static char text[MSG + 1];
    static char reply[MSG + 64];
    for (;;) {
        struct pollfd pfd[MAX_CHILDREN + 1];
        int blind = 0;
        pfd[0].fd = sock;
        pfd[0].events = POLLIN;
        for (int i = 0; i < n_children; i++) {
            pfd[i + 1].fd = children[i].pidfd;  /* negative: ignored by poll */
            pfd[i + 1].events = POLLIN;
            pfd[i + 1].revents = 0;
            blind |= children[i].pidfd < 0;
        }
        int polled = n_children;
        if (poll(pfd, polled + 1, blind ? 20 : -1) < 0) {
            if (errno == EINTR) continue;
            _exit(70);
        }
        /* Children that exited (walk down: report_exit moves the last entry into the freed slot). */
        for (int i = polled - 1; i >= 0; i--) {
            int done = pfd[i + 1].revents != 0;
            if (children[i].pidfd < 0) {
                siginfo_t info;
                info.si_pid = 0;
                done = waitid(P_PID, (id_t)children[i].pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid;
            }
            if (done) report_exit(sock, i);
        }
        if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;

        union {
            char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
            struct cmsghdr align;
        } u;
        struct iovec iov = {text, MSG};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            n = 0;
        }
        int fds[MAX_FDS * 2];
        int n_fds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int j = 0; j < k && n_fds < MAX_FDS * 2; j++) {
                    memcpy(&fds[n_fds++], CMSG_DATA(c) + j * sizeof(int), sizeof(int));
                }
            }
        }
        if (n == 0) {  /* the worker closed its end */
            for (int i = 0; i < n_children; i++) {
                if (children[i].pidfd >= 0) syscall(SYS_pidfd_send_signal, children[i].pidfd, SIGKILL, NULL, 0);
            }
            _exit(0);
        }
        text[n] = 0;
        request_t r = {0};
        int too_long = n >= MSG || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC));  /* as the Python loop judges it */
        const char *err = too_long ? "request too long" : parse(text, &r);
        if (!err && r.n_targets != n_fds) err = "descriptors do not match their targets";
        if (!err && n_children == MAX_CHILDREN) err = "too many live processes";
        pid_t pid = -1;
        if (!err) {
            for (int j = 0; j < n_fds; j++) dup2(fds[j], r.targets[j]);
            if (forks % (unsigned long)remeasure == 0) vm_base = vm_size();
            forks++;
            pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
            if (pid == 0) {
                enter_sandbox(&r, &policy, vm_base);
                return Py_BuildValue("(ss)", r.role, r.workdir);
            }
            if (pid < 0) err = strerror(errno);
            for (int j = 0; j < r.n_targets; j++) dup2(own[r.targets[j]], r.targets[j]);
        }
        for (int j = 0; j < n_fds; j++) close(fds[j]);
        if (err) {
            snprintf(reply, sizeof reply, "e %.64s %s", text, err);  /* text starts with the token (parse cut it) */
            send_text(sock, reply, -1);
            continue;
        }
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        children[n_children].pid = pid;
        children[n_children].pidfd = pidfd;
        n_children++;
        snprintf(reply, sizeof reply, "p %s %d", r.token, (int)pid);
        send_text(sock, reply, pidfd);
    }
}

/* ---- the few libc calls the service needs that Python 3.10/3.11's os module lacks (else: ctypes, in sandbox.py;
 * with these the service never imports ctypes, and no program process maps it) ---- */

static PyObject *os_error(void) { return PyErr_SetFromErrno(PyExc_OSError); }

static PyObject *py_unshare(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long flags;
    if (!PyArg_ParseTuple(args, "k", &flags)) return NULL;
    if (unshare((int)flags) < 0) return os_error();
    Py_RETURN_NONE;
}

static PyObject *py_mount(PyObject *self, PyObject *args) {
    (void)self;
    const char *src, *target, *fstype, *data;
    unsigned long flags;
    if (!PyArg_ParseTuple(args, "zszkz", &src, &target, &fstype, &flags, &data)) return NULL;
    if (mount(src, target, fstype, flags, data) < 0) return os_error();
    Py_RETURN_NONE;
}

static PyObject *py_umount2(PyObject *self, PyObject *args) {
    (void)self;
    const char *target;
    int flags;
    if (!PyArg_ParseTuple(args, "si", &target, &flags)) return NULL;
    if (umount2(target, flags) < 0) return os_error();
    Py_RETURN_NONE;
}

static PyObject *py_prctl(PyObject *self, PyObject *args) {
    (void)self;
    int option;
    unsigned long arg;
    if (!PyArg_ParseTuple(args, "ik", &option, &arg)) return NULL;
    if (prctl(option, arg, 0, 0, 0) < 0) return os_error();
    Py_RETURN_NONE;
}

static PyObject *py_malloc_trim(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    malloc_trim(0);
    Py_RETURN_NONE;
}

static PyObject *py_clone(PyObject *self, PyObject *args) {  /* sandbox.clone_process */
    (void)self;
    unsigned long flags;
    int threaded;
    if (!PyArg_ParseTuple(args, "kp", &flags, &threaded)) return NULL;
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) return os_error();
    if (pid == 0 && threaded) PyOS_AfterFork_Child();
    return PyLong_FromLong(pid);
}

static PyMethodDef methods[] = {
    {"serve", serve, METH_VARARGS, "Serve spawn requests; returns only in a child (see the module source)."},
    {"unshare", py_unshare, METH_VARARGS, "unshare(flags)"},
    {"mount", py_mount, METH_VARARGS, "mount(source or None, target, fstype or None, flags, data or None)"},
    {"umount2", py_umount2, METH_VARARGS, "umount2(target, flags)"},
    {"prctl", py_prctl, METH_VARARGS, "prctl(option, arg)"},
    {"malloc_trim", py_malloc_trim, METH_NOARGS, "malloc_trim(0): free heap memory back to the kernel"},
    {"clone", py_clone, METH_VARARGS, "clone(flags, threaded): fork with namespace flags, holding the GIL"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_zygote", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__zygote(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI", 3) < 0) {  /* zygote.ABI: the serve() this build implements */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
