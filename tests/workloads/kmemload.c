// SPDX-License-Identifier: GPL-2.0
/*
 * kmemload - generate accounted kernel memory (memcg kmem) in a cgroup.
 *
 * Usage: kmemload [OPTIONS] KIND
 *
 *   KIND is one of dentry, negdentry, pipe, socket, thread, mix.
 *   Every object is allocated by the main thread, so the kernel charges it
 *   to the memory cgroup that thread is in at that moment (objects from
 *   SLAB_ACCOUNT caches or __GFP_ACCOUNT allocations).
 *
 *   kmemload --count 5000 dentry              allocate, free, exit
 *   kmemload --mib 64 --hold pipe             allocate ~64 MiB, print
 *                                             "READY pipe N", wait for a
 *                                             line on stdin / EOF /
 *                                             SIGUSR1 / SIGTERM, free,
 *                                             print "FREED pipe N"
 *   kmemload --cgroup /sys/fs/cgroup/t1 --hold-seconds 5 --phases thread
 *   kmemload --count 1000 --migrate-to /sys/fs/cgroup/t2 --after 500 socket
 *   kmemload --count 4096 --flip-nodes 256 dentry
 *
 * Lines on stdout (always flushed at once) are meant for scripts:
 *   PHASE <alloc-start|alloc-done|free-done> <CLOCK_MONOTONIC sec.nsec>
 *   MIGRATED <kind> <objects allocated before the move> <cgroup path>
 *   READY <kind> <count>          (only with --hold / --hold-seconds)
 *   FREED <kind> <count>          (only with --hold / --hold-seconds)
 * Everything else (information, progress, errors) goes to stderr.
 * Exit status: 0 ok, 1 system call failure, 2 bad usage,
 * 128+signal if interrupted by SIGINT/SIGTERM/SIGHUP while allocating.
 *
 * Run "kmemload --help" for all options and the per-kind size estimates.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

#define PROG			"kmemload"
#define MAX_COUNT		100000000L
#define DEFAULT_COUNT		1000L
#define FD_SLACK		64
#define THREAD_STACK_SIZE	(64 * 1024)
#define SIGNAL_CHECK_INTERVAL	64
#define PAGE_KIB		4.0

enum kind {
	KIND_DENTRY,
	KIND_NEGDENTRY,
	KIND_PIPE,
	KIND_SOCKET,
	KIND_THREAD,
	NR_BASIC_KINDS,
	KIND_MIX = NR_BASIC_KINDS,
};

/*
 * Rough per-object kmem estimates in KiB, used only to turn --mib into a
 * count. Measured as the memcg kmem delta per object on an x86-64 6.18
 * kernel (4 KiB pages, slab merging on); other kernels and configs, such
 * as the 6.1 test guest, may differ by some tens of percent. Check real
 * numbers in memory.stat (slab, kernel_stack, sock) of the cgroup.
 */
static const struct kind_info {
	const char *name;
	double est_kib;
	const char *what;
} kind_info[] = {
	[KIND_DENTRY]	 = { "dentry",	  1.3,
			     "dentry + ext4 inode per file" },
	[KIND_NEGDENTRY] = { "negdentry", 0.2,
			     "one negative dentry per name" },
	[KIND_PIPE]	 = { "pipe",	  2.4,
			     "pipe_inode_info, bufs, inode, dentry, 2 files; +4 KiB/data page" },
	[KIND_SOCKET]	 = { "socket",	  4.7,
			     "per pair: 2 unix socks, 2 sock inodes, dentries, files" },
	[KIND_THREAD]	 = { "thread",	  21.0,
			     "task_struct, 16 KiB kernel stack, pid, stack vmas" },
	[KIND_MIX]	 = { "mix",	  0.0,
			     "round-robin over the five kinds above" },
};

struct options {
	enum kind kind;
	long count;
	double mib;
	bool count_set;
	bool mib_set;
	int cpu;
	int node;
	bool hold;
	double hold_seconds;
	const char *cgroup;
	const char *dir;
	size_t bytes;
	bool keep_files;
	bool quiet;
	bool progress;
	bool phases;
	const char *migrate_to;
	long after;
	bool after_set;
	long flip_nodes;
};

struct state {
	/* directory for dentry / negdentry */
	char *dir_path;
	int dir_fd;
	bool dir_created;
	long nr_files;
	long nr_negative;
	/* pipes and socket pairs: fds[2 * i], fds[2 * i + 1] */
	int *pipe_fds;
	long nr_pipes;
	int *sock_fds;
	long nr_socks;
	char *pipe_data;
	/* threads */
	pthread_t *threads;
	long nr_threads;
	/* number of objects per kind this run will allocate */
	long planned[NR_BASIC_KINDS];
};

static struct options opt = {
	.cpu = -1,
	.node = -1,
	.hold_seconds = -1.0,
	.after = -1,
};

static struct state st = {
	.dir_fd = -1,
};

static pthread_mutex_t thread_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t thread_cond = PTHREAD_COND_INITIALIZER;
static bool threads_exit;

static sigset_t handled_signals;
static int signal_fd = -1;

/* ---------------------------------------------------------------- output */

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info(const char *fmt, ...)
{
	va_list ap;

	if (opt.quiet)
		return;
	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Report a failed system call (errno is still set) */
static void sys_error(const char *call, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void sys_error(const char *call, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	fprintf(stderr, PROG ": %s", call);
	if (fmt) {
		fputc('(', stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc(')', stderr);
	}
	fprintf(stderr, ": %s\n", strerror(err));
	errno = err;
}

static void short_usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [--count N | --mib M] [--hold] [--hold-seconds S]\n"
		"       [--cgroup PATH] [--cpu C | --node N | --flip-nodes M]\n"
		"       [--dir DIR] [--keep-files] [--bytes B] [--migrate-to PATH --after K]\n"
		"       [--phases] [--progress] [--quiet]\n"
		"       dentry|negdentry|pipe|socket|thread|mix\n"
		"Try '" PROG " --help' for more information.\n");
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	short_usage(stderr);
	exit(2);
}

static void help(void)
{
	int k;

	printf("Usage: " PROG " [OPTIONS] KIND\n"
	       "Allocate accounted kernel memory (memcg kmem) in the current cgroup,\n"
	       "then free it again.\n"
	       "\n"
	       "Kinds:\n"
	       "  dentry     create N empty files in the work directory (dentries and\n"
	       "             inodes, e.g. dentry + ext4_inode_cache)\n"
	       "  negdentry  stat() N distinct non-existent names in the work directory\n"
	       "             (negative dentries; needs a filesystem that keeps them,\n"
	       "             e.g. ext4 -- tmpfs drops negative dentries at once)\n"
	       "  pipe       N pipes kept open (pipe_inode_info, buffer array, files);\n"
	       "             with --bytes, also B bytes of data per pipe (pipe pages)\n"
	       "  socket     N AF_UNIX SOCK_STREAM socket pairs kept open\n"
	       "  thread     N threads blocked until release (task_struct, kernel stack)\n"
	       "  mix        N objects total, round-robin over the five kinds above\n"
	       "\n"
	       "Amount:\n"
	       "  -n, --count N        objects to allocate (default %ld)\n"
	       "  -m, --mib M          allocate about M MiB of kmem instead, using the\n"
	       "                       rough per-object estimates below\n"
	       "  -b, --bytes B        pipe: write B bytes (suffix K/M allowed) into each\n"
	       "                       pipe, growing it with F_SETPIPE_SZ if needed\n"
	       "\n"
	       "Placement:\n"
	       "  -g, --cgroup PATH    first move into cgroup PATH (cgroup v2 directory;\n"
	       "                       writes the pid to PATH/cgroup.procs)\n"
	       "  -c, --cpu C          pin to CPU C before allocating\n"
	       "  -N, --node N         pin to the CPUs of NUMA node N (from\n"
	       "                       /sys/devices/system/node/nodeN/cpulist)\n"
	       "      --flip-nodes M   alternate between the CPUs of node 0 and node 1\n"
	       "                       every M objects (starts on node 0)\n"
	       "      --migrate-to PATH  after --after K objects move into cgroup PATH,\n"
	       "                       print \"MIGRATED <kind> <K> <PATH>\" and allocate the\n"
	       "                       rest there\n"
	       "      --after K        see --migrate-to (default: half of the count)\n"
	       "\n"
	       "Lifetime:\n"
	       "  -H, --hold           after allocating print \"READY <kind> <count>\" and\n"
	       "                       wait for a line or EOF on stdin, SIGUSR1, SIGTERM,\n"
	       "                       SIGINT or SIGHUP; then free and print\n"
	       "                       \"FREED <kind> <count>\". A stdin that is closed or\n"
	       "                       /dev/null is ignored (so \"" PROG " --hold ... &\"\n"
	       "                       in a script waits for a signal)\n"
	       "  -s, --hold-seconds S hold for S seconds (a signal ends it early; with\n"
	       "                       --hold also stdin); prints READY/FREED as well\n"
	       "                       Without either: allocate, free, exit.\n"
	       "  -d, --dir DIR        work directory for dentry/negdentry; created if\n"
	       "                       missing (and then removed on free). Default: a new\n"
	       "                       directory " PROG ".XXXXXX under /mnt if writable,\n"
	       "                       else under the current directory\n"
	       "  -k, --keep-files     dentry: do not unlink the files (nor remove the\n"
	       "                       directory) on free\n"
	       "\n"
	       "Output:\n"
	       "  -p, --phases         print \"PHASE alloc-start|alloc-done|free-done T\"\n"
	       "                       with T = CLOCK_MONOTONIC seconds\n"
	       "  -P, --progress       progress to stderr every ~10%% (default only when\n"
	       "                       stderr is a terminal and N >= 10000)\n"
	       "  -q, --quiet          no informational messages on stderr\n"
	       "  -h, --help           this help\n"
	       "\n"
	       "Free semantics: files are unlinked and the work directory removed; an\n"
	       "unlinked file's dentry first turns negative and is freed when its\n"
	       "directory is removed (or reclaimed), so with an existing --dir some\n"
	       "negative dentries stay behind. Negative dentries of negdentry are freed\n"
	       "the same way.\n"
	       "\n"
	       "Rough kmem per object, used for --mib (memcg kmem measured on x86-64\n"
	       "6.18; other kernels and configs differ by some tens of percent):\n",
	       DEFAULT_COUNT);
	for (k = 0; k < NR_BASIC_KINDS; k++)
		printf("  %-10s %5.1f KiB  %s\n", kind_info[k].name,
		       kind_info[k].est_kib, kind_info[k].what);
	printf("  %-10s %5s      average of the above (pipe data added)\n",
	       "mix", "");
	printf("\n"
	       "Exit status: 0 ok, 1 system call failed, 2 bad usage, 128+SIG when\n"
	       "interrupted while allocating.\n");
}

/* --------------------------------------------------------------- parsing */

static long parse_long(const char *optname, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		usage_error("%s: '%s' is not an integer in [%ld, %ld]",
			    optname, s, min, max);
	return v;
}

static double parse_double(const char *optname, const char *s, double min)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min) || v > 1e12)
		usage_error("%s: '%s' is not a number >= %g", optname, s, min);
	return v;
}

static size_t parse_size(const char *optname, const char *s)
{
	unsigned long long v, mult = 1;
	char *end;

	if (!isdigit((unsigned char)*s))
		usage_error("%s: '%s' is not a size", optname, s);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		usage_error("%s: '%s' is not a size", optname, s);
	switch (*end) {
	case 'k': case 'K':
		mult = 1ULL << 10;
		end++;
		break;
	case 'm': case 'M':
		mult = 1ULL << 20;
		end++;
		break;
	case 'g': case 'G':
		mult = 1ULL << 30;
		end++;
		break;
	}
	if (*end && strcmp(end, "iB") && strcmp(end, "B"))
		usage_error("%s: '%s' is not a size (use e.g. 4096, 64K, 1M)",
			    optname, s);
	if (v > (1ULL << 40) / mult)
		usage_error("%s: '%s' is too large", optname, s);
	return (size_t)(v * mult);
}

static enum kind parse_kind(const char *s)
{
	int k;

	for (k = 0; k <= KIND_MIX; k++)
		if (!strcmp(s, kind_info[k].name))
			return k;
	usage_error("unknown kind '%s' (dentry, negdentry, pipe, socket, thread, mix)",
		    s);
}

enum {
	OPT_FLIP_NODES = 256,
	OPT_MIGRATE_TO,
	OPT_AFTER,
	OPT_KIND,
};

static const struct option long_options[] = {
	{ "count",	  required_argument, NULL, 'n' },
	{ "mib",	  required_argument, NULL, 'm' },
	{ "bytes",	  required_argument, NULL, 'b' },
	{ "cgroup",	  required_argument, NULL, 'g' },
	{ "cpu",	  required_argument, NULL, 'c' },
	{ "node",	  required_argument, NULL, 'N' },
	{ "flip-nodes",	  required_argument, NULL, OPT_FLIP_NODES },
	{ "migrate-to",	  required_argument, NULL, OPT_MIGRATE_TO },
	{ "after",	  required_argument, NULL, OPT_AFTER },
	{ "hold",	  no_argument,	     NULL, 'H' },
	{ "hold-seconds", required_argument, NULL, 's' },
	{ "dir",	  required_argument, NULL, 'd' },
	{ "keep-files",	  no_argument,	     NULL, 'k' },
	{ "phases",	  no_argument,	     NULL, 'p' },
	{ "progress",	  no_argument,	     NULL, 'P' },
	{ "quiet",	  no_argument,	     NULL, 'q' },
	{ "kind",	  required_argument, NULL, OPT_KIND },
	{ "help",	  no_argument,	     NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

static void parse_args(int argc, char **argv)
{
	const char *kind_name = NULL;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:m:b:g:c:N:Hs:d:kpPqh",
				long_options, NULL)) != -1) {
		switch (c) {
		case 'n':
			opt.count = parse_long("--count", optarg, 0, MAX_COUNT);
			opt.count_set = true;
			break;
		case 'm':
			opt.mib = parse_double("--mib", optarg, 0.0);
			opt.mib_set = true;
			break;
		case 'b':
			opt.bytes = parse_size("--bytes", optarg);
			break;
		case 'g':
			opt.cgroup = optarg;
			break;
		case 'c':
			opt.cpu = parse_long("--cpu", optarg, 0, CPU_SETSIZE - 1);
			break;
		case 'N':
			opt.node = parse_long("--node", optarg, 0, 65535);
			break;
		case OPT_FLIP_NODES:
			opt.flip_nodes = parse_long("--flip-nodes", optarg, 1,
						    MAX_COUNT);
			break;
		case OPT_MIGRATE_TO:
			opt.migrate_to = optarg;
			break;
		case OPT_AFTER:
			opt.after = parse_long("--after", optarg, 0, MAX_COUNT);
			opt.after_set = true;
			break;
		case 'H':
			opt.hold = true;
			break;
		case 's':
			opt.hold_seconds = parse_double("--hold-seconds", optarg,
							0.0);
			break;
		case 'd':
			opt.dir = optarg;
			break;
		case 'k':
			opt.keep_files = true;
			break;
		case 'p':
			opt.phases = true;
			break;
		case 'P':
			opt.progress = true;
			break;
		case 'q':
			opt.quiet = true;
			break;
		case OPT_KIND:
			kind_name = optarg;
			break;
		case 'h':
			help();
			exit(0);
		case ':':
			usage_error("option '%s' needs an argument",
				    argv[optind - 1]);
		default:
			if (optopt)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}

	if (optind < argc) {
		if (kind_name)
			usage_error("kind given twice ('%s' and '%s')",
				    kind_name, argv[optind]);
		kind_name = argv[optind++];
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!kind_name)
		usage_error("no kind given");
	opt.kind = parse_kind(kind_name);

	if (opt.count_set && opt.mib_set)
		usage_error("--count and --mib are mutually exclusive");
	if ((opt.cpu >= 0) + (opt.node >= 0) + (opt.flip_nodes > 0) > 1)
		usage_error("--cpu, --node and --flip-nodes are mutually exclusive");
	if (opt.after_set && !opt.migrate_to)
		usage_error("--after needs --migrate-to");
	if (opt.keep_files && opt.kind != KIND_DENTRY && opt.kind != KIND_MIX)
		usage_error("--keep-files only applies to dentry and mix");
	if (opt.bytes && opt.kind != KIND_PIPE && opt.kind != KIND_MIX)
		usage_error("--bytes only applies to pipe and mix");
}

/* Per-object estimate in KiB, including pipe data pages */
static double kind_estimate(enum kind k)
{
	double data_kib = 0.0;
	double sum = 0.0;
	int i;

	if (opt.bytes)
		data_kib = (double)((opt.bytes + 4095) / 4096) * PAGE_KIB;
	if (k == KIND_PIPE)
		return kind_info[KIND_PIPE].est_kib + data_kib;
	if (k != KIND_MIX)
		return kind_info[k].est_kib;
	for (i = 0; i < NR_BASIC_KINDS; i++)
		sum += kind_estimate(i);
	return sum / NR_BASIC_KINDS;
}

static void resolve_count(void)
{
	double n;

	if (opt.mib_set) {
		n = opt.mib * 1024.0 / kind_estimate(opt.kind);
		if (n > MAX_COUNT)
			usage_error("--mib %g needs more than %ld objects",
				    opt.mib, MAX_COUNT);
		opt.count = (long)(n + 0.5);
	} else if (!opt.count_set) {
		opt.count = DEFAULT_COUNT;
	}

	if (opt.migrate_to) {
		if (!opt.after_set)
			opt.after = opt.count / 2;
		if (opt.after > opt.count)
			usage_error("--after %ld is larger than the count %ld",
				    opt.after, opt.count);
	}
}

/* Kind of object number @i of this run */
static enum kind object_kind(long i)
{
	if (opt.kind == KIND_MIX)
		return (enum kind)(i % NR_BASIC_KINDS);
	return opt.kind;
}

static void plan_counts(void)
{
	int k;

	if (opt.kind != KIND_MIX) {
		st.planned[opt.kind] = opt.count;
		return;
	}
	for (k = 0; k < NR_BASIC_KINDS; k++)
		st.planned[k] = opt.count / NR_BASIC_KINDS +
				(k < opt.count % NR_BASIC_KINDS);
}

/* -------------------------------------------------------------- cpu/node */

/* Parse a cpulist such as "0-3,8,10-11" into @set. Returns CPUs found. */
static int parse_cpulist(const char *s, cpu_set_t *set)
{
	int nr = 0;

	CPU_ZERO(set);
	while (*s && *s != '\n') {
		char *end;
		long first, last, cpu;

		first = strtol(s, &end, 10);
		if (end == s)
			return -1;
		last = first;
		s = end;
		if (*s == '-') {
			s++;
			last = strtol(s, &end, 10);
			if (end == s)
				return -1;
			s = end;
		}
		if (first < 0 || last < first)
			return -1;
		for (cpu = first; cpu <= last && cpu < CPU_SETSIZE; cpu++) {
			CPU_SET(cpu, set);
			nr++;
		}
		if (*s == ',')
			s++;
	}
	return nr;
}

/* Usage error (exit 2) if the node does not exist or has no CPUs */
static void node_cpus(int node, cpu_set_t *set)
{
	char path[128];
	char buf[4096];
	ssize_t len;
	int fd, nr;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", node);
	if (access(path, F_OK))
		usage_error("NUMA node %d does not exist (no %s)", node, path);
	strncat(path, "/cpulist", sizeof(path) - strlen(path) - 1);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		sys_error("open", "%s", path);
		exit(1);
	}
	len = read(fd, buf, sizeof(buf) - 1);
	if (len < 0) {
		sys_error("read", "%s", path);
		exit(1);
	}
	close(fd);
	buf[len] = '\0';
	nr = parse_cpulist(buf, set);
	if (nr < 0)
		usage_error("cannot parse %s: '%s'", path, buf);
	if (nr == 0)
		usage_error("NUMA node %d has no CPUs", node);
}

static int set_affinity(const cpu_set_t *set, const char *what)
{
	if (sched_setaffinity(0, sizeof(*set), set)) {
		sys_error("sched_setaffinity", "%s", what);
		return -1;
	}
	return 0;
}

static cpu_set_t flip_sets[2];

static void setup_affinity(void)
{
	cpu_set_t set;
	char what[64];

	if (opt.cpu >= 0) {
		if (sched_getaffinity(0, sizeof(set), &set)) {
			sys_error("sched_getaffinity", NULL);
			exit(1);
		}
		if (!CPU_ISSET(opt.cpu, &set))
			usage_error("CPU %d is not online or not allowed for this task",
				    opt.cpu);
		CPU_ZERO(&set);
		CPU_SET(opt.cpu, &set);
		snprintf(what, sizeof(what), "cpu %d", opt.cpu);
		if (set_affinity(&set, what))
			exit(1);
	} else if (opt.node >= 0) {
		node_cpus(opt.node, &set);
		snprintf(what, sizeof(what), "node %d", opt.node);
		if (set_affinity(&set, what))
			exit(1);
	} else if (opt.flip_nodes > 0) {
		node_cpus(0, &flip_sets[0]);
		node_cpus(1, &flip_sets[1]);
	}
}

/* ---------------------------------------------------------------- cgroup */

static int move_to_cgroup(const char *cgroup)
{
	char path[PATH_MAX];
	char pid[32];
	int fd, len;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup) >=
	    (int)sizeof(path)) {
		fprintf(stderr, PROG ": cgroup path too long: %s\n", cgroup);
		return -1;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		sys_error("open", "%s", path);
		fprintf(stderr, PROG ": cannot move into cgroup %s\n", cgroup);
		return -1;
	}
	len = snprintf(pid, sizeof(pid), "%d\n", getpid());
	if (write(fd, pid, len) != len) {
		sys_error("write", "%s", path);
		fprintf(stderr, PROG ": cannot move into cgroup %s\n", cgroup);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* ---------------------------------------------------------------- limits */

static int raise_nofile(long needed)
{
	struct rlimit rl;
	rlim_t hard;

	if (getrlimit(RLIMIT_NOFILE, &rl)) {
		sys_error("getrlimit", "RLIMIT_NOFILE");
		return -1;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= (rlim_t)needed)
		return 0;
	hard = rl.rlim_max;
	if (hard == RLIM_INFINITY || hard >= (rlim_t)needed) {
		/* up to the hard limit: no privilege needed */
		rl.rlim_cur = hard == RLIM_INFINITY ? (rlim_t)needed : hard;
		if (!setrlimit(RLIMIT_NOFILE, &rl))
			return 0;
		sys_error("setrlimit", "RLIMIT_NOFILE, soft %lu",
			  (unsigned long)rl.rlim_cur);
		return -1;
	}
	/* beyond it: needs CAP_SYS_RESOURCE and needed <= fs.nr_open */
	rl.rlim_cur = rl.rlim_max = needed;
	if (!setrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	sys_error("setrlimit", "RLIMIT_NOFILE, %ld", needed);
	fprintf(stderr,
		PROG ": need %ld file descriptors (2 per pipe / socket pair + %d), "
		"but the RLIMIT_NOFILE hard limit is %lu and cannot be raised: "
		"run as root (CAP_SYS_RESOURCE), raise fs.nr_open, or lower --count\n",
		needed, FD_SLACK, (unsigned long)hard);
	return -1;
}

/* ------------------------------------------------------------- directory */

static int setup_dir(void)
{
	struct statfs sfs;
	char path[PATH_MAX];
	const char *base;
	struct stat sb;

	if (opt.dir) {
		st.dir_path = strdup(opt.dir);
		if (!st.dir_path) {
			sys_error("strdup", NULL);
			return -1;
		}
		if (mkdir(opt.dir, 0700) == 0) {
			st.dir_created = true;
		} else if (errno != EEXIST) {
			sys_error("mkdir", "%s", opt.dir);
			return -1;
		}
	} else {
		base = ".";
		if (!stat("/mnt", &sb) && S_ISDIR(sb.st_mode) &&
		    !access("/mnt", W_OK))
			base = "/mnt";
		snprintf(path, sizeof(path), "%s/" PROG ".XXXXXX", base);
		if (!mkdtemp(path)) {
			sys_error("mkdtemp", "%s", path);
			return -1;
		}
		st.dir_created = true;
		st.dir_path = strdup(path);
		if (!st.dir_path) {
			sys_error("strdup", NULL);
			rmdir(path);
			return -1;
		}
	}

	st.dir_fd = open(st.dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st.dir_fd < 0) {
		sys_error("open", "%s", st.dir_path);
		return -1;
	}
	if (!fstatfs(st.dir_fd, &sfs) && sfs.f_type == TMPFS_MAGIC &&
	    st.planned[KIND_NEGDENTRY])
		info("warning: %s is on tmpfs, which does not keep negative dentries",
		     st.dir_path);
	info("work directory %s%s", st.dir_path,
	     st.dir_created ? "" : " (existing)");
	return 0;
}

static void object_name(char *buf, size_t len, char type, long i)
{
	/* short enough to stay an inline dentry name (< 32 bytes) */
	snprintf(buf, len, "%c%d_%ld", type, (int)getpid(), i);
}

/* ------------------------------------------------------------- allocators */

static int alloc_dentry(void)
{
	char name[64];
	int fd;

	object_name(name, sizeof(name), 'f', st.nr_files);
	fd = openat(st.dir_fd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC,
		    0600);
	if (fd < 0) {
		sys_error("openat", "%s/%s, O_CREAT", st.dir_path, name);
		return -1;
	}
	st.nr_files++;
	if (close(fd)) {
		sys_error("close", "%s/%s", st.dir_path, name);
		return -1;
	}
	return 0;
}

static int alloc_negdentry(void)
{
	char name[64];
	struct stat sb;

	object_name(name, sizeof(name), 'n', st.nr_negative);
	if (!fstatat(st.dir_fd, name, &sb, AT_SYMLINK_NOFOLLOW)) {
		fprintf(stderr, PROG ": %s/%s unexpectedly exists\n",
			st.dir_path, name);
		return -1;
	}
	if (errno != ENOENT) {
		sys_error("fstatat", "%s/%s", st.dir_path, name);
		return -1;
	}
	st.nr_negative++;
	return 0;
}

static int fill_pipe(int wfd)
{
	size_t done = 0;
	ssize_t n;
	int size;

	size = fcntl(wfd, F_GETPIPE_SZ);
	if (size < 0) {
		sys_error("fcntl", "F_GETPIPE_SZ");
		return -1;
	}
	if ((size_t)size < opt.bytes) {
		if (opt.bytes > INT_MAX ||
		    fcntl(wfd, F_SETPIPE_SZ, (int)opt.bytes) < 0) {
			sys_error("fcntl", "F_SETPIPE_SZ, %zu", opt.bytes);
			if (errno == EPERM)
				fprintf(stderr, PROG ": --bytes is above fs.pipe-max-size "
					"(raise it or run with CAP_SYS_RESOURCE)\n");
			return -1;
		}
	}
	while (done < opt.bytes) {
		n = write(wfd, st.pipe_data, opt.bytes - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			sys_error("write", "pipe, %zu bytes", opt.bytes);
			return -1;
		}
		done += n;
	}
	return 0;
}

static int alloc_pipe(void)
{
	int *fds = &st.pipe_fds[2 * st.nr_pipes];

	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK)) {
		sys_error("pipe2", NULL);
		return -1;
	}
	st.nr_pipes++;
	if (opt.bytes)
		return fill_pipe(fds[1]);
	return 0;
}

static int alloc_socket(void)
{
	int *fds = &st.sock_fds[2 * st.nr_socks];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds)) {
		sys_error("socketpair", "AF_UNIX, SOCK_STREAM");
		return -1;
	}
	st.nr_socks++;
	return 0;
}

static void *thread_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&thread_lock);
	while (!threads_exit)
		pthread_cond_wait(&thread_cond, &thread_lock);
	pthread_mutex_unlock(&thread_lock);
	return NULL;
}

static pthread_attr_t thread_attr;

static int alloc_thread(void)
{
	int err;

	err = pthread_create(&st.threads[st.nr_threads], &thread_attr,
			     thread_main, NULL);
	if (err) {
		errno = err;
		sys_error("pthread_create", "thread %ld", st.nr_threads + 1);
		if (err == EAGAIN)
			fprintf(stderr, PROG ": check ulimit -u, kernel.threads-max, "
				"kernel.pid_max and pids.max of the cgroup\n");
		return -1;
	}
	st.nr_threads++;
	return 0;
}

static int alloc_object(enum kind k)
{
	switch (k) {
	case KIND_DENTRY:
		return alloc_dentry();
	case KIND_NEGDENTRY:
		return alloc_negdentry();
	case KIND_PIPE:
		return alloc_pipe();
	case KIND_SOCKET:
		return alloc_socket();
	case KIND_THREAD:
		return alloc_thread();
	default:
		return -1;
	}
}

static void *xcalloc(size_t nmemb, size_t size)
{
	void *p;

	if (!nmemb)
		return NULL;
	p = calloc(nmemb, size);
	if (!p) {
		sys_error("calloc", "%zu x %zu", nmemb, size);
		exit(1);
	}
	return p;
}

/* Everything that must exist before the first object is allocated */
static int setup_resources(void)
{
	long fds;
	int err;

	if (st.planned[KIND_DENTRY] || st.planned[KIND_NEGDENTRY]) {
		if (setup_dir())
			return -1;
	}
	st.pipe_fds = xcalloc(2 * st.planned[KIND_PIPE], sizeof(int));
	st.sock_fds = xcalloc(2 * st.planned[KIND_SOCKET], sizeof(int));
	st.threads = xcalloc(st.planned[KIND_THREAD], sizeof(pthread_t));
	if (opt.bytes && st.planned[KIND_PIPE]) {
		st.pipe_data = malloc(opt.bytes);
		if (!st.pipe_data) {
			sys_error("malloc", "%zu", opt.bytes);
			return -1;
		}
		memset(st.pipe_data, 0x5a, opt.bytes);
	}

	fds = 2 * (st.planned[KIND_PIPE] + st.planned[KIND_SOCKET]);
	if (fds && raise_nofile(fds + FD_SLACK))
		return -1;

	if (st.planned[KIND_THREAD]) {
		err = pthread_attr_init(&thread_attr);
		if (!err)
			err = pthread_attr_setstacksize(&thread_attr,
							THREAD_STACK_SIZE);
		if (err) {
			errno = err;
			sys_error("pthread_attr_setstacksize", NULL);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ free */

static void close_pairs(int *fds, long nr)
{
	long i;

	for (i = 0; i < 2 * nr; i++)
		close(fds[i]);
}

static void free_all(void)
{
	char name[64];
	long i;

	if (st.nr_threads) {
		pthread_mutex_lock(&thread_lock);
		threads_exit = true;
		pthread_cond_broadcast(&thread_cond);
		pthread_mutex_unlock(&thread_lock);
		for (i = 0; i < st.nr_threads; i++)
			pthread_join(st.threads[i], NULL);
		st.nr_threads = 0;
	}
	if (st.planned[KIND_THREAD])
		pthread_attr_destroy(&thread_attr);

	close_pairs(st.pipe_fds, st.nr_pipes);
	st.nr_pipes = 0;
	close_pairs(st.sock_fds, st.nr_socks);
	st.nr_socks = 0;

	if (st.dir_fd >= 0) {
		if (opt.keep_files) {
			if (st.nr_files)
				info("kept %ld files in %s", st.nr_files,
				     st.dir_path);
		} else {
			for (i = 0; i < st.nr_files; i++) {
				object_name(name, sizeof(name), 'f', i);
				if (unlinkat(st.dir_fd, name, 0))
					sys_error("unlinkat", "%s/%s",
						  st.dir_path, name);
			}
		}
		close(st.dir_fd);
		st.dir_fd = -1;
	}
	/* rmdir also frees the (now negative) child dentries */
	if (st.dir_created && !(opt.keep_files && st.nr_files) &&
	    rmdir(st.dir_path))
		sys_error("rmdir", "%s", st.dir_path);
	st.dir_created = false;
	st.nr_files = 0;
	st.nr_negative = 0;

	free(st.pipe_fds);
	free(st.sock_fds);
	free(st.threads);
	free(st.pipe_data);
	free(st.dir_path);
}

/* --------------------------------------------------------------- signals */

static void setup_signals(void)
{
	sigemptyset(&handled_signals);
	sigaddset(&handled_signals, SIGINT);
	sigaddset(&handled_signals, SIGTERM);
	sigaddset(&handled_signals, SIGHUP);
	sigaddset(&handled_signals, SIGUSR1);
	/* blocked before any thread exists, so every thread inherits it */
	if (sigprocmask(SIG_BLOCK, &handled_signals, NULL)) {
		sys_error("sigprocmask", NULL);
		exit(1);
	}
	signal_fd = signalfd(-1, &handled_signals, SFD_CLOEXEC | SFD_NONBLOCK);
	if (signal_fd < 0) {
		sys_error("signalfd", NULL);
		exit(1);
	}
	/* a reader of our stdout going away must not kill us before cleanup */
	signal(SIGPIPE, SIG_IGN);
}

static const char *signal_name(int sig)
{
	switch (sig) {
	case SIGINT:
		return "SIGINT";
	case SIGTERM:
		return "SIGTERM";
	case SIGHUP:
		return "SIGHUP";
	case SIGUSR1:
		return "SIGUSR1";
	default:
		return "signal";
	}
}

/* A pending SIGINT/SIGTERM/SIGHUP (not SIGUSR1), or 0 */
static int pending_abort_signal(void)
{
	sigset_t pending;

	if (sigpending(&pending))
		return 0;
	if (sigismember(&pending, SIGTERM))
		return SIGTERM;
	if (sigismember(&pending, SIGINT))
		return SIGINT;
	if (sigismember(&pending, SIGHUP))
		return SIGHUP;
	return 0;
}

/* ------------------------------------------------------------------ hold */

static double now_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void phase(const char *name)
{
	struct timespec ts;

	if (!opt.phases)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	out("PHASE %s %lld.%09ld\n", name, (long long)ts.tv_sec, ts.tv_nsec);
}

/* stdin is usable for release if it is open and not /dev/null */
static bool stdin_usable(void)
{
	struct stat sb;

	if (fstat(STDIN_FILENO, &sb))
		return false;
	if (S_ISCHR(sb.st_mode) && major(sb.st_rdev) == 1 &&
	    minor(sb.st_rdev) == 3)
		return false;
	return true;
}

static void hold(void)
{
	bool use_stdin = opt.hold && stdin_usable();
	struct signalfd_siginfo si;
	double deadline = -1.0;
	struct pollfd pfd[2];
	char buf[256];
	ssize_t n;
	int timeout, i;

	if (opt.hold_seconds >= 0)
		deadline = now_monotonic() + opt.hold_seconds;

	pfd[0].fd = signal_fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = use_stdin ? STDIN_FILENO : -1;
	pfd[1].events = POLLIN;

	for (;;) {
		timeout = -1;
		if (deadline >= 0) {
			double left = deadline - now_monotonic();

			if (left <= 0)
				return;
			timeout = left * 1000.0 > 86400000.0 ? 86400000 :
				  (int)(left * 1000.0) + 1;
		}
		n = poll(pfd, 2, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			sys_error("poll", NULL);
			return;
		}
		if (pfd[0].revents & POLLIN) {
			if (read(signal_fd, &si, sizeof(si)) == sizeof(si))
				info("got %s, releasing",
				     signal_name(si.ssi_signo));
			return;
		}
		if (pfd[1].revents & POLLNVAL) {
			pfd[1].fd = -1;
			continue;
		}
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				return;		/* EOF or error */
			for (i = 0; i < n; i++)
				if (buf[i] == '\n')
					return;
		}
	}
}

/* ------------------------------------------------------------------ main */

static bool progress_enabled(void)
{
	if (opt.quiet)
		return false;
	if (opt.progress)
		return true;
	return isatty(STDERR_FILENO) && opt.count >= 10000;
}

/*
 * Allocate opt.count objects. Returns 0, -1 on a system call failure, or
 * a signal number if interrupted.
 */
static int allocate(void)
{
	bool show_progress = progress_enabled();
	long step = opt.count / 10 ? opt.count / 10 : 1;
	long i;
	int sig;

	for (i = 0; i < opt.count; i++) {
		if (opt.migrate_to && i == opt.after) {
			if (move_to_cgroup(opt.migrate_to))
				return -1;
			out("MIGRATED %s %ld %s\n", kind_info[opt.kind].name, i,
			    opt.migrate_to);
		}
		if (opt.flip_nodes > 0 && i % opt.flip_nodes == 0 &&
		    set_affinity(&flip_sets[(i / opt.flip_nodes) & 1],
				 (i / opt.flip_nodes) & 1 ? "node 1" : "node 0"))
			return -1;
		if (i % SIGNAL_CHECK_INTERVAL == 0) {
			sig = pending_abort_signal();
			if (sig)
				return sig;
		}
		if (alloc_object(object_kind(i)))
			return -1;
		if (show_progress && ((i + 1) % step == 0 || i + 1 == opt.count))
			fprintf(stderr, PROG ": %s %ld/%ld (%ld%%)\n",
				kind_info[opt.kind].name, i + 1, opt.count,
				(i + 1) * 100 / opt.count);
	}
	/* --after equal to the count: move once everything is allocated */
	if (opt.migrate_to && opt.after == opt.count) {
		if (move_to_cgroup(opt.migrate_to))
			return -1;
		out("MIGRATED %s %ld %s\n", kind_info[opt.kind].name, i,
		    opt.migrate_to);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *kind;
	bool holding;
	int ret;

	parse_args(argc, argv);
	resolve_count();
	plan_counts();
	kind = kind_info[opt.kind].name;
	holding = opt.hold || opt.hold_seconds >= 0;

	setup_signals();
	if (opt.cgroup && move_to_cgroup(opt.cgroup))
		return 1;
	setup_affinity();
	if (setup_resources()) {
		free_all();
		return 1;
	}

	if (opt.mib_set)
		info("--mib %g: %ld %s objects at ~%.2f KiB each", opt.mib,
		     opt.count, kind, kind_estimate(opt.kind));

	phase("alloc-start");
	ret = allocate();
	if (ret) {
		if (ret > 0)
			fprintf(stderr, PROG ": interrupted by %s while allocating, freeing\n",
				signal_name(ret));
		else
			fprintf(stderr, PROG ": allocation of %s failed, freeing\n",
				kind);
		free_all();
		return ret > 0 ? 128 + ret : 1;
	}
	phase("alloc-done");

	if (holding) {
		out("READY %s %ld\n", kind, opt.count);
		hold();
	} else {
		info("allocated %ld %s objects, freeing", opt.count, kind);
	}

	free_all();
	phase("free-done");
	if (holding)
		out("FREED %s %ld\n", kind, opt.count);
	return 0;
}
