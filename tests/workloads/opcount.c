// SPDX-License-Identifier: GPL-2.0
/*
 * opcount: one kernel operation N times in a loop, timed with
 * CLOCK_MONOTONIC.  In a guest booted with QEMU's -icount shift=0 one
 * guest nanosecond is one guest instruction, so the result is
 * instructions per operation (scripts/objcg-shadow bench).
 *
 *   opcount [--cgroup DIR] [--cpu N] [--dir DIR] OP ITERATIONS
 *   prints: OPCOUNT <op> <iterations> <nanoseconds>
 *
 * Every operation undoes itself, so an iteration leaves nothing behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char path[4096];

static void die(const char *what)
{
	fprintf(stderr, "opcount: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* stat(): a name lookup, nothing accounted */
static void op_stat(void)
{
	struct stat st;

	if (stat(path, &st))
		die("stat");
}

/* access(): overrides the credentials, an accounted struct cred */
static void op_access(void)
{
	if (access(path, R_OK))
		die("access");
}

/* open() + close(): an accounted struct file */
static void op_open(void)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		die("open");
	close(fd);
}

static void make_pipe(int fds[2])
{
	if (pipe(fds))
		die("pipe");
}

/* pipe() + 2 close(): inode, dentry, two files, the buffer array */
static void op_pipe(void)
{
	int fds[2];

	make_pipe(fds);
	close(fds[0]);
	close(fds[1]);
}

/* a pipe's first write: an accounted page (the kmem page path) */
static void op_pipe_page(void)
{
	int fds[2];

	make_pipe(fds);
	if (write(fds[1], "x", 1) != 1)
		die("write");
	close(fds[0]);
	close(fds[1]);
}

/* socket() + close(): an AF_UNIX socket, its inode and file */
static void op_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	close(fd);
}

/* fork() + exit + wait: task, mm, page tables, files, signal state */
static void op_fork(void)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		die("fork");
	if (!pid)
		_exit(0);
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid");
}

/* create + unlink: the inode and dentry are freed by RCU callbacks */
static void op_creat_unlink(void)
{
	char name[4200];
	int fd;

	snprintf(name, sizeof(name), "%s.new", path);
	fd = open(name, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd < 0)
		die("create");
	close(fd);
	if (unlink(name))
		die("unlink");
}

static const struct {
	const char *name;
	void (*fn)(void);
} ops[] = {
	{ "stat", op_stat },
	{ "access", op_access },
	{ "open", op_open },
	{ "pipe", op_pipe },
	{ "pipe_page", op_pipe_page },
	{ "socket", op_socket },
	{ "fork", op_fork },
	{ "creat_unlink", op_creat_unlink },
};

static void usage(void)
{
	size_t i;

	fprintf(stderr, "usage: opcount [--cgroup DIR] [--cpu N] [--dir DIR] OP ITERATIONS\nOP:");
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		fprintf(stderr, " %s", ops[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

static void join_cgroup(const char *dir)
{
	char procs[4200];
	FILE *f;

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", dir);
	f = fopen(procs, "w");
	if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f))
		die(procs);
}

static void pin_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity");
}

int main(int argc, char **argv)
{
	const char *dir = "/tmp", *cgroup = NULL;
	struct timespec t0, t1;
	void (*fn)(void) = NULL;
	long n, i;
	char *end;
	int cpu = -1;
	size_t k;
	int fd;

	while (argc > 3 && !strncmp(argv[1], "--", 2)) {
		if (!strcmp(argv[1], "--cgroup"))
			cgroup = argv[2];
		else if (!strcmp(argv[1], "--cpu"))
			cpu = atoi(argv[2]);
		else if (!strcmp(argv[1], "--dir"))
			dir = argv[2];
		else
			usage();
		argc -= 2;
		argv += 2;
	}
	if (argc != 3)
		usage();
	for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
		if (!strcmp(argv[1], ops[k].name))
			fn = ops[k].fn;
	n = strtol(argv[2], &end, 10);
	if (!fn || *end || n < 1)
		usage();
	if (cgroup)
		join_cgroup(cgroup);
	if (cpu >= 0)
		pin_cpu(cpu);
	snprintf(path, sizeof(path), "%s/opcount.%d", dir, getpid());
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	if (fd < 0)
		die(path);
	close(fd);
	fn();	/* first use: dentry cache, slab pages, task state */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++)
		fn();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	unlink(path);
	printf("OPCOUNT %s %ld %lld\n", argv[1], n,
	       (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL +
	       (t1.tv_nsec - t0.tv_nsec));
	return 0;
}
