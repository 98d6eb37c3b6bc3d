// SPDX-License-Identifier: GPL-2.0
/* Out-of-line parts of the userspace shim (see osh_env.h). */
#define _GNU_SOURCE
#include "osh_env.h"

long osh_shim_warnings;
long osh_shim_fail_alloc_in;
__thread int osh_shim_cpu;

static pthread_mutex_t osh_rcu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcu_head *osh_rcu_pending;

void *osh_shim_alloc(size_t size, bool zero, gfp_t gfp)
{
	(void)gfp;
	if (osh_shim_fail_alloc_in > 0 &&
	    __atomic_sub_fetch(&osh_shim_fail_alloc_in, 1, __ATOMIC_RELAXED) == 0)
		return NULL;
	return zero ? calloc(1, size) : malloc(size);
}

char *kstrdup(const char *s, gfp_t gfp)
{
	size_t len = strlen(s) + 1;
	char *copy = osh_shim_alloc(len, false, gfp);

	if (copy)
		memcpy(copy, s, len);
	return copy;
}

/* writers first, so a stream of readers cannot starve synchronize_rcu() */
static pthread_rwlock_t osh_rcu_readers;
static pthread_once_t osh_rcu_once = PTHREAD_ONCE_INIT;
static __thread int osh_rcu_depth;

static void osh_rcu_init(void)
{
	pthread_rwlockattr_t attr;

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&osh_rcu_readers, &attr);
}

void rcu_read_lock(void)
{
	pthread_once(&osh_rcu_once, osh_rcu_init);
	if (osh_rcu_depth++ == 0)
		pthread_rwlock_rdlock(&osh_rcu_readers);
}

void rcu_read_unlock(void)
{
	if (--osh_rcu_depth == 0)
		pthread_rwlock_unlock(&osh_rcu_readers);
}

void synchronize_rcu(void)
{
	pthread_once(&osh_rcu_once, osh_rcu_init);
	pthread_rwlock_wrlock(&osh_rcu_readers);
	pthread_rwlock_unlock(&osh_rcu_readers);
}

void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head))
{
	head->func = func;
	pthread_mutex_lock(&osh_rcu_lock);
	head->next = osh_rcu_pending;
	osh_rcu_pending = head;
	pthread_mutex_unlock(&osh_rcu_lock);
}

__thread int osh_shim_in_nmi;
static __thread struct rcu_head *osh_deferred;

void osh_defer(struct rcu_head *head, rcu_callback_t fn)
{
	if (!osh_shim_in_nmi) {
		fn(head);
		return;
	}
	head->func = fn;
	head->next = osh_deferred;
	osh_deferred = head;
}

long osh_shim_run_deferred(void)
{
	long n = 0;

	while (osh_deferred) {
		struct rcu_head *head = osh_deferred;

		osh_deferred = head->next;
		head->func(head);
		n++;
	}
	return n;
}

void osh_shim_rcu_barrier(void)
{
	struct rcu_head *head;

	for (;;) {
		pthread_mutex_lock(&osh_rcu_lock);
		head = osh_rcu_pending;
		osh_rcu_pending = NULL;
		pthread_mutex_unlock(&osh_rcu_lock);
		if (!head)
			break;
		while (head) {
			struct rcu_head *next = head->next;

			head->func(head);
			head = next;
		}
	}
}
