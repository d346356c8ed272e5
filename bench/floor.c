/* The floor for `nook run --rm IMG true`: the least a rootless container start can do.
 * New user, mount and pid namespaces; the full subordinate id range written by newuidmap and
 * newgidmap (run in parallel, as nook does); the rootfs bound onto itself; /proc mounted;
 * pivot_root; exec. No storage, no state, no /dev, no checks.
 *   floor ROOTFS UID_MAP_ARGS... -- GID_MAP_ARGS... -- CMD...
 * e.g. floor /tmp/bb 0 1001 1 1 100000 65536 -- 0 1001 1 1 100000 65536 -- /bin/true */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int sync_pipe[2];
static char *rootfs;
static char **cmd;
static char stack[1 << 16];

static void die(const char *what) { perror(what); _exit(125); }

static int child(void *arg) {
    (void)arg;
    char c;
    close(sync_pipe[1]);
    if (read(sync_pipe[0], &c, 1) != 1) _exit(125);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) die("make-rprivate");
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL)) die("bind rootfs");
    char proc[4096];
    snprintf(proc, sizeof proc, "%s/proc", rootfs);
    if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) die("mount proc");
    if (chdir(rootfs)) die("chdir");
    if (syscall(SYS_pivot_root, ".", ".")) die("pivot_root");
    if (umount2(".", MNT_DETACH)) die("umount old root");
    if (chdir("/")) die("chdir /");
    execv(cmd[0], cmd);
    die("exec");
    return 0;
}

static pid_t spawn_map(const char *tool, pid_t pid, char **args, int n) {
    char spid[32];
    snprintf(spid, sizeof spid, "%d", pid);
    char *argv[64];
    int k = 0;
    argv[k++] = (char *)tool;
    argv[k++] = spid;
    for (int i = 0; i < n && k < 62; i++) argv[k++] = args[i];
    argv[k] = NULL;
    pid_t p = fork();
    if (p == 0) { execvp(tool, argv); _exit(127); }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: floor ROOTFS UIDMAP... -- GIDMAP... -- CMD...\n"); return 125; }
    rootfs = argv[1];
    int i = 2, u0 = i;
    while (i < argc && strcmp(argv[i], "--")) i++;
    int un = i - u0, g0 = ++i;
    while (i < argc && strcmp(argv[i], "--")) i++;
    int gn = i - g0;
    cmd = &argv[i + 1];
    if (pipe(sync_pipe)) die("pipe");
    pid_t pid = clone(child, stack + sizeof stack, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, NULL);
    if (pid < 0) die("clone");
    close(sync_pipe[0]);
    pid_t a = spawn_map("newuidmap", pid, &argv[u0], un);
    pid_t b = spawn_map("newgidmap", pid, &argv[g0], gn);
    int st;
    if (waitpid(a, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "newuidmap failed\n"); return 125; }
    if (waitpid(b, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "newgidmap failed\n"); return 125; }
    if (write(sync_pipe[1], "1", 1) != 1) die("write");
    if (waitpid(pid, &st, 0) < 0) die("waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
