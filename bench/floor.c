/* The floor for spawning in a jail: clone into new mount, pid, uts, ipc, net and cgroup
 * namespaces and exec, nothing else (no root, no /proc, no privileges dropped). The ANCHORS
 * figure "floor" is this program; bench/spawn.sh builds it with gcc -static. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    long pid = syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
                       CLONE_NEWNET | CLONE_NEWCGROUP | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0)
        return 125;
    if (pid == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int st;
    if (waitpid((pid_t)pid, &st, 0) < 0)
        return 125;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
