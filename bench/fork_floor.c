/* What one sandboxed program costs the kernel on this machine, without Python: fork + exit + wait of a process with
 * MB of anonymous memory and AREAS extra memory areas (mappings), whose child writes TOUCH pages (copy-on-write, or
 * fresh zero-filled pages with FRESH=1). The execution service's floor per job (o1jax/execution/README.md).
 *
 *     cc -O2 bench/fork_floor.c -o /tmp/fork_floor
 *     taskset -c 0 /tmp/fork_floor MB TOUCH FRESH AREAS [CLONE_FLAGS]
 *         e.g. 10 0 0 0, 10 400 0 0, 10 400 1 0, 0 0 0 150; 0 0 0 0 0x20000000 (a PID namespace per child, as root),
 *         0 0 0 0 0x28000000 (PID + IPC namespaces)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s MB TOUCH FRESH AREAS [CLONE_FLAGS]\n", argv[0]);
        return 2;
    }
    long flags = argc == 6 ? strtol(argv[5], 0, 0) : 0;
    int mb = atoi(argv[1]), touch = atoi(argv[2]), fresh = atoi(argv[3]), areas = atoi(argv[4]);
    size_t size = (size_t)mb << 20;
    char *heap = mmap(0, size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(heap, 1, size);
    char *blank = mmap(0, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < areas; i++) {  /* alternate protections so neighbours never merge into one area */
        char *p = mmap(0, 4 * 4096, (i % 2) ? PROT_READ | PROT_WRITE : PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (i % 2) p[0] = 1;
    }
    if (!fresh && (size_t)touch * 4096 > size) {
        fprintf(stderr, "TOUCH pages exceed MB\n");
        return 2;
    }
    const int n = 2000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        pid_t pid = flags ? (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0) : fork();
        if (pid == 0) {
            char *target = fresh ? blank : heap;
            for (int j = 0; j < touch; j++) target[(size_t)j * 4096] = 2;
            _exit(0);
        }
        waitpid(pid, 0, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n / 1e3;
    printf("%d MB, %d %s pages written, %d extra areas, clone flags %#lx: %.1f us per fork + exit + wait\n", mb,
           touch, fresh ? "fresh" : "copy-on-write", areas, flags, us);
    return 0;
}
