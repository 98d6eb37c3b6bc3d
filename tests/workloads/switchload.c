// SPDX-License-Identifier: GPL-2.0
/*
 * switchload: the shape of the stress-ng "switch" regression of per-node
 * objcgs.  N threads of one memcg first allocate on alternating NUMA
 * nodes (so a per-task cache keeps objcgs of different nodes), then take
 * turns on one CPU, passing a token round a ring of pipes and allocating
 * accounted kernel memory at every turn (open/close of /dev/null: a
 * SLAB_ACCOUNT struct file).
 *
 * With --cgroups A,B,... the workers are processes, worker i in cgroup
 * i mod k: tasks of several memcgs taking turns on one CPU, the case that
 * drains even the 6.1 stock at every turn.
 *
 * usage: switchload [--threads N] [--warm K] [--rounds R] [--allocs A]
 *                   [--cpu C] [--cgroup PATH | --cgroups P1,P2,...] [--pause]
 * Prints "PHASE warm-done" (warmed up, all on the ring CPU, no turn taken
 * yet) and "PHASE switch-done" (all turns taken, no worker exited yet) on
 * stdout.  With --pause it then waits for a line on stdin, so that a
 * caller can measure the switch phase alone: warm-up and exit free
 * objects on other CPUs, which per-node designs pay for as drains.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_THREADS	64

static int nthreads = 4, warm = 200, rounds = 2000, allocs = 4, ring_cpu;
static int node_cpu[2] = { -1, -1 };
static int ring[MAX_THREADS][2];
static pthread_barrier_t phase_barrier;
static int pause_for_input;
static char *cgroups[MAX_THREADS];
static int ncgroups;
static int ready_pipe[2], go_pipe[MAX_THREADS][2];

static void die(const char *what)
{
	fprintf(stderr, "switchload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: switchload [--threads N (2..%d)] [--warm K] [--rounds R]\n"
		"                  [--allocs A] [--cpu C] [--cgroup PATH |\n"
		"                  --cgroups P1,P2,...] [--pause]\n",
		MAX_THREADS);
	exit(2);
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity");
}

static void allocate(int n)
{
	while (n--) {
		int fd = open("/dev/null", O_RDONLY);

		if (fd < 0)
			die("open /dev/null");
		close(fd);
	}
}

/* First CPU of node @node from sysfs, or -1. */
static int first_cpu_of(int node)
{
	char path[64];
	FILE *f;
	int cpu = -1;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist",
		 node);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%d", &cpu) != 1)
		cpu = -1;
	fclose(f);
	return cpu;
}

static void join_cgroup(const char *dir);

/*
 * Between phases the workers report ready and wait for the main thread's
 * go: two barriers for threads, pipes for processes.
 */
static void phase_wait(long i)
{
	char b = 'r';

	if (!ncgroups) {
		pthread_barrier_wait(&phase_barrier);
		pthread_barrier_wait(&phase_barrier);
		return;
	}
	if (write(ready_pipe[1], &b, 1) != 1 || read(go_pipe[i][0], &b, 1) != 1)
		die("phase pipes");
}

static void phase_gather(void)
{
	char b;
	int i;

	if (!ncgroups) {
		pthread_barrier_wait(&phase_barrier);
		return;
	}
	for (i = 0; i < nthreads; i++) {
		if (read(ready_pipe[0], &b, 1) != 1) {
			fprintf(stderr, "switchload: a worker exited early\n");
			exit(1);
		}
	}
}

static void phase_release(void)
{
	char b = 'g';
	int i;

	if (!ncgroups) {
		pthread_barrier_wait(&phase_barrier);
		return;
	}
	for (i = 0; i < nthreads; i++)
		if (write(go_pipe[i][1], &b, 1) != 1)
			die("write go");
}

static void phase_print_and_pause(const char *line)
{
	char buf[64];

	printf("PHASE %s\n", line);
	fflush(stdout);
	if (pause_for_input && !fgets(buf, sizeof(buf), stdin)) {
		fprintf(stderr, "switchload: stdin closed during --pause\n");
		exit(1);
	}
}

/*
 * The main thread's side of the three phase changes: warmed up, pinned
 * to the ring CPU (measurement starts), all turns taken (it ends).
 */
static void run_phases(void)
{
	char token = 't', line[96];

	phase_gather();
	phase_release();
	phase_gather();
	snprintf(line, sizeof(line), "warm-done %s=%d nodes=%d,%d",
		 ncgroups ? "processes" : "threads", nthreads, node_cpu[0],
		 node_cpu[1]);
	phase_print_and_pause(line);
	if (write(ring[0][1], &token, 1) != 1)
		die("write first token");
	phase_release();
	phase_gather();
	snprintf(line, sizeof(line), "switch-done rounds=%d allocs=%d", rounds,
		 allocs);
	phase_print_and_pause(line);
	phase_release();
}

static void *worker(void *arg)
{
	long i = (long)arg;
	char token;
	int r;

	if (ncgroups)
		join_cgroup(cgroups[i % ncgroups]);
	/* phase 1: fill the task's caches on alternating nodes */
	pin(node_cpu[i % 2] >= 0 ? node_cpu[i % 2] : node_cpu[0]);
	allocate(warm);
	phase_wait(i);

	/* phase 2: everybody on one CPU, taking turns */
	pin(ring_cpu);
	phase_wait(i);
	for (r = 0; r < rounds; r++) {
		if (read(ring[i][0], &token, 1) != 1)
			die("read token");
		allocate(allocs);
		if (write(ring[(i + 1) % nthreads][1], &token, 1) != 1)
			die("write token");
	}
	phase_wait(i);
	return NULL;
}

static void join_cgroup(const char *dir)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "w");
	if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f))
		die(path);
}

static int number(const char *s, int lo, int hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end || v < lo || v > hi) {
		fprintf(stderr, "switchload: '%s' is not a number in %d..%d\n",
			s, lo, hi);
		usage();
	}
	return (int)v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "threads", 1, NULL, 't' }, { "warm", 1, NULL, 'w' },
		{ "rounds", 1, NULL, 'r' }, { "allocs", 1, NULL, 'a' },
		{ "cpu", 1, NULL, 'c' }, { "cgroup", 1, NULL, 'g' },
		{ "cgroups", 1, NULL, 'G' }, { "pause", 0, NULL, 'p' },
		{ "help", 0, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	pthread_t th[MAX_THREADS];
	long i;
	int c;

	while ((c = getopt_long(argc, argv, "t:w:r:a:c:g:G:ph", opts, NULL)) != -1) {
		switch (c) {
		case 't': nthreads = number(optarg, 2, MAX_THREADS); break;
		case 'w': warm = number(optarg, 0, 1 << 24); break;
		case 'r': rounds = number(optarg, 1, 1 << 24); break;
		case 'a': allocs = number(optarg, 1, 1 << 16); break;
		case 'c': ring_cpu = number(optarg, 0, CPU_SETSIZE - 1); break;
		case 'g': join_cgroup(optarg); break;
		case 'p': pause_for_input = 1; break;
		case 'G':
			for (char *tok = strtok(optarg, ","); tok && ncgroups < MAX_THREADS;
			     tok = strtok(NULL, ","))
				cgroups[ncgroups++] = tok;
			break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	node_cpu[0] = first_cpu_of(0);
	node_cpu[1] = first_cpu_of(1);
	if (node_cpu[0] < 0)
		node_cpu[0] = 0;
	for (i = 0; i < nthreads; i++)
		if (pipe(ring[i]))
			die("pipe");
	if (ncgroups) {
		if (pipe(ready_pipe))
			die("pipe");
		for (i = 0; i < nthreads; i++) {
			pid_t pid;

			if (pipe(go_pipe[i]))
				die("pipe");
			pid = fork();
			if (pid < 0)
				die("fork");
			if (!pid) {
				worker((void *)i);
				_exit(0);
			}
		}
		/* a worker that dies before its ready makes phase_gather() fail */
		close(ready_pipe[1]);
		run_phases();
		for (i = 0; i < nthreads; i++) {
			int status;

			if (wait(&status) < 0 || !WIFEXITED(status) ||
			    WEXITSTATUS(status))
				die("a worker failed");
		}
		return 0;
	}
	if (pthread_barrier_init(&phase_barrier, NULL, nthreads + 1))
		die("pthread_barrier_init");
	for (i = 0; i < nthreads; i++)
		if ((errno = pthread_create(&th[i], NULL, worker, (void *)i)))
			die("pthread_create");
	run_phases();
	for (i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	return 0;
}
