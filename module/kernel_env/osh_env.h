/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The narrow interface the pure core (module/core/) may use, kernel side.
 * tests/shim/osh_env.h provides the same names in userspace.  Anything the
 * core needs from the kernel must be listed here and in the shim.
 */
#ifndef OBJCG_SHADOW_ENV_H
#define OBJCG_SHADOW_ENV_H

#include <linux/types.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/bug.h>
#include <linux/errno.h>
#include <linux/err.h>
#include <linux/string.h>
#include <linux/slab.h>
#include <linux/sched.h>
#include <linux/list.h>
#include <linux/rculist.h>
#include <linux/rcupdate.h>
#include <linux/spinlock.h>
#include <linux/mutex.h>
#include <linux/irqflags.h>
#include <linux/atomic.h>
#include <linux/refcount.h>
#include <linux/hash.h>
#include <linux/percpu.h>
#include <linux/smp.h>
#include <linux/bitops.h>
#include <linux/timekeeping.h>

/**
 * osh_defer() - run @fn(@head) now, or soon if this is NMI context
 * @head: an rcu_head of the object, not queued anywhere
 * @fn: what to run; it may take locks and call call_rcu() with @head
 *
 * The handlers of int3 kprobes run in NMI context, where the core's locks
 * and call_rcu() are not safe: there the call is queued and run from an
 * irq_work on this CPU (module/kmem.c).
 */
void osh_defer(struct rcu_head *head, rcu_callback_t fn);

/**
 * osh_zalloc() - zeroed shadow state allocated on the event path
 * @size: bytes
 * @gfp: allocation context
 *
 * kzalloc(), except that the fail_alloc_every parameter fails every Nth
 * call on purpose (module/kmem.c), so tests can prove that each failure
 * is counted and accounting stays right for what was tracked.
 *
 * Return: the memory or NULL.
 */
void *osh_zalloc(size_t size, gfp_t gfp);

#endif /* OBJCG_SHADOW_ENV_H */
