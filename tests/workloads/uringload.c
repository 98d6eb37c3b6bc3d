// SPDX-License-Identifier: GPL-2.0
/*
 * uringload - accounted kmem that only kmem_cache_alloc_bulk() allocates.
 *
 * Usage: uringload [--rings R] [--nops N]
 *
 *   Sets up R io_uring instances (default 200) and submits N no-op
 *   requests (default 32) on each in one io_uring_enter().  io_uring takes
 *   its requests (struct io_kiocb, a SLAB_ACCOUNT cache) from
 *   kmem_cache_alloc_bulk(), which fires no per-object kmem tracepoint,
 *   and keeps them cached in the ring until the ring is closed.
 *
 *   Prints "READY rings R requests R*N", waits for a line on stdin (or
 *   EOF), closes every ring and prints "FREED rings R".
 *   Exit status: 0 ok, 1 system call failure (io_uring disabled, ...),
 *   2 bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static int ring_setup(unsigned int entries, struct io_uring_params *p)
{
	return syscall(__NR_io_uring_setup, entries, p);
}

static int ring_enter(int fd, unsigned int submit, unsigned int wait)
{
	return syscall(__NR_io_uring_enter, fd, submit, wait,
		       IORING_ENTER_GETEVENTS, NULL, 0);
}

static void die(const char *what)
{
	fprintf(stderr, "uringload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long parse(const char *opt, const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 1 || v > max) {
		fprintf(stderr, "uringload: %s: '%s' is not an integer in "
			"[1, %ld]\n", opt, s, max);
		exit(2);
	}
	return v;
}

/* One ring: @nops no-op requests submitted and reaped, the ring left open. */
static int ring_with_nops(unsigned int nops)
{
	struct io_uring_params p;
	struct io_uring_sqe *sqes;
	unsigned int i, *array, *tail, mask, head;
	size_t sq_len, sqes_len;
	char *sq;
	int fd, done;

	memset(&p, 0, sizeof(p));
	fd = ring_setup(nops, &p);
	if (fd < 0)
		die("io_uring_setup");
	sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned int);
	sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		  fd, IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		die("mmap SQ ring");
	sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
	sqes = mmap(NULL, sqes_len, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
	if (sqes == MAP_FAILED)
		die("mmap SQEs");
	array = (unsigned int *)(sq + p.sq_off.array);
	tail = (unsigned int *)(sq + p.sq_off.tail);
	mask = *(unsigned int *)(sq + p.sq_off.ring_mask);
	head = *tail;
	for (i = 0; i < nops; i++) {
		unsigned int idx = (head + i) & mask;

		memset(&sqes[idx], 0, sizeof(sqes[idx]));
		sqes[idx].opcode = IORING_OP_NOP;
		sqes[idx].user_data = i;
		array[idx] = idx;
	}
	__atomic_store_n(tail, head + nops, __ATOMIC_RELEASE);
	done = ring_enter(fd, nops, nops);
	if (done < 0)
		die("io_uring_enter");
	if ((unsigned int)done != nops) {
		fprintf(stderr, "uringload: %d of %u requests submitted\n", done,
			nops);
		exit(1);
	}
	/* the requests now sit in the ring's cache; the mappings can go */
	munmap(sqes, sqes_len);
	munmap(sq, sq_len);
	return fd;
}

int main(int argc, char **argv)
{
	long rings = 200, nops = 32, i;
	char line[64];
	int *fds;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rings") && i + 1 < argc) {
			rings = parse("--rings", argv[++i], 100000);
		} else if (!strcmp(argv[i], "--nops") && i + 1 < argc) {
			nops = parse("--nops", argv[++i], 4096);
		} else {
			fprintf(stderr, "usage: uringload [--rings R] [--nops N]\n");
			return 2;
		}
	}
	fds = calloc(rings, sizeof(*fds));
	if (!fds)
		die("calloc");
	for (i = 0; i < rings; i++)
		fds[i] = ring_with_nops(nops);
	printf("READY rings %ld requests %ld\n", rings, rings * nops);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin) && ferror(stdin))
		die("stdin");
	for (i = 0; i < rings; i++)
		close(fds[i]);
	printf("FREED rings %ld\n", rings);
	fflush(stdout);
	return 0;
}
