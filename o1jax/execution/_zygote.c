/* The zygote's fork loop in C (o1jax/execution/zygote.py is the Python twin, used where this did not build).
 *
 * Why C: after every fork the zygote's memory is shared, copy-on-write, with the new program process. A Python loop
 * writes ~115 pages of it per job (every object it touches gets a reference-count write), each a page copy while
 * the child lives. This loop writes only its own stack and a small table, and never runs the interpreter, so the
 * zygote's Python heap stays exactly as the warm-up left it.
 *
 * serve(sock, own, flags, remeasure) serves spawn requests on the SOCK_SEQPACKET socket `sock` (wire format in
 * zygote.py). In the parent it never returns (it exits when the worker closes its end). In each child it returns
 * (role, uid or None, cpu_s, memory_mb, fsize_mb, nofile, nproc, targets, workdir, vm_base): the child's
 * descriptors are already on their target numbers, like the Python loop does it.
 *   own: the zygote's own descriptors for 0..6, put back after every clone;
 *   flags: clone flags (CLONE_NEWPID | CLONE_NEWIPC or 0);
 *   remeasure: forks between measurements of the address-space size (/proc/self/statm).
 * The GIL stays held throughout: the zygote has no other thread, so a child's interpreter is consistent as cloned
 * (CPython's after-fork reinitialisation has nothing to repair, as in sandbox.clone_process).
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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
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

static PyObject *child_tuple(request_t *r, long vm_base) {
    PyObject *targets = PyTuple_New(r->n_targets);
    if (!targets) return NULL;
    for (int i = 0; i < r->n_targets; i++) PyTuple_SET_ITEM(targets, i, PyLong_FromLong(r->targets[i]));
    PyObject *uid = strcmp(r->uid, "-") == 0 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromString(r->uid, NULL, 10);
    return Py_BuildValue("(sNlllllNsl)", r->role, uid, r->ints[0], r->ints[1], r->ints[2], r->ints[3], r->ints[4],
                         targets, r->workdir, vm_base);
}

static PyObject *serve(PyObject *self, PyObject *args) {
    (void)self;
    int sock, remeasure;
    unsigned long flags;
    PyObject *own_obj;
    if (!PyArg_ParseTuple(args, "iOki", &sock, &own_obj, &flags, &remeasure)) return NULL;
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
        const char *err = parse(text, &r);
        if (!err && r.n_targets != n_fds) err = "descriptors do not match their targets";
        if (!err && n_children == MAX_CHILDREN) err = "too many live processes";
        pid_t pid = -1;
        if (!err) {
            for (int j = 0; j < n_fds; j++) dup2(fds[j], r.targets[j]);
            if (forks % (unsigned long)remeasure == 0) vm_base = vm_size();
            forks++;
            pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
            if (pid == 0) return child_tuple(&r, vm_base);
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

static PyMethodDef methods[] = {
    {"serve", serve, METH_VARARGS, "Serve spawn requests; returns only in a child (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_zygote", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__zygote(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI", 1) < 0) {  /* zygote.ABI: the serve() this build implements */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
