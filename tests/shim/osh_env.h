/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Userspace stand-in for module/kernel_env/osh_env.h: just the kernel API
 * the pure core uses, with the same names and semantics, in the spirit of
 * tools/testing/radix-tree.  Atomics use the compiler's __atomic builtins
 * so ThreadSanitizer understands them.  call_rcu() defers to
 * osh_shim_rcu_barrier(), which tests call once no reader can be running.
 */
#ifndef OBJCG_SHADOW_ENV_H
#define OBJCG_SHADOW_ENV_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t s64;
typedef int16_t s16;
typedef int32_t s32;
typedef unsigned int gfp_t;

#define GFP_KERNEL	0x1u
#define GFP_ATOMIC	0x2u
#define GFP_NOWAIT	0x4u
#define __GFP_NOWARN	0x8u

#define __rcu
#define __percpu
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#ifndef __always_inline
#define __always_inline	inline __attribute__((always_inline))
#endif
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)

#ifndef PAGE_SHIFT
#define PAGE_SHIFT	12
#endif
#define PAGE_SIZE	(1UL << PAGE_SHIFT)

#define MAX_ERRNO	4095
#define IS_ERR_VALUE(x)	((unsigned long)(void *)(x) >= (unsigned long)-MAX_ERRNO)
static inline void *ERR_PTR(long error) { return (void *)error; }
static inline long PTR_ERR(const void *ptr) { return (long)ptr; }
static inline bool IS_ERR(const void *ptr) { return IS_ERR_VALUE(ptr); }

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define BIT(n)		(1UL << (n))
#define ALIGN(x, a)	(((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define min(a, b)	((a) < (b) ? (a) : (b))
#define max(a, b)	((a) > (b) ? (a) : (b))
#define min_t(t, a, b)	((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define max_t(t, a, b)	((t)(a) > (t)(b) ? (t)(a) : (t)(b))
#define swap(a, b) \
	do { __typeof__(a) __tmp = (a); (a) = (b); (b) = __tmp; } while (0)
#define abs(x)		({ __typeof__(x) __x = (x); __x < 0 ? -__x : __x; })
#define U16_MAX		((u16)~0U)
#define S16_MAX		((s16)(U16_MAX >> 1))

#include <assert.h>		/* static_assert */
#define hweight64(x)	__builtin_popcountll(x)
#define __ffs64(x)	((unsigned long)__builtin_ctzll(x))

#define READ_ONCE(x)	__atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define smp_load_acquire(p)	__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define smp_store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define smp_mb()	__atomic_thread_fence(__ATOMIC_SEQ_CST)
#ifdef __SANITIZE_THREAD__
/* TSan rejects fences; no TSan test walks a map while it changes */
#define smp_rmb()	__atomic_signal_fence(__ATOMIC_SEQ_CST)
#else
#define smp_rmb()	__atomic_thread_fence(__ATOMIC_ACQUIRE)
#endif

/* Warnings are counted so tests can assert that none fired. */
extern long osh_shim_warnings;
#define WARN_ON_ONCE(cond) ({						\
	bool __c = !!(cond);						\
	if (__c) {							\
		__atomic_add_fetch(&osh_shim_warnings, 1, __ATOMIC_RELAXED); \
		fprintf(stderr, "WARN_ON_ONCE(%s) at %s:%d\n", #cond,	\
			__FILE__, __LINE__);				\
	}								\
	__c;								\
})
#define WARN_ON(cond)	WARN_ON_ONCE(cond)

/* Allocation, with failure injection: fail the Nth call from now. */
extern long osh_shim_fail_alloc_in;	/* <= 0: never */
void *osh_shim_alloc(size_t size, bool zero, gfp_t gfp);
#define kmalloc(size, gfp)	osh_shim_alloc((size), false, (gfp))
#define kzalloc(size, gfp)	osh_shim_alloc((size), true, (gfp))
#define kcalloc(n, size, gfp)	osh_shim_alloc((n) * (size), true, (gfp))
#define kfree(p)		free((void *)(p))
#define osh_zalloc(size, gfp)	kzalloc((size), (gfp))
#define kvmalloc_array(n, size, gfp) osh_shim_alloc((n) * (size), false, (gfp))
#define kvfree(p)		free((void *)(p))
#define cond_resched()		do { } while (0)
char *kstrdup(const char *s, gfp_t gfp);

static inline u64 ktime_get_mono_fast_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (u64)ts.tv_sec * 1000000000ULL + (u64)ts.tv_nsec;
}

/* Atomics */
typedef struct { int counter; } atomic_t;
typedef struct { long counter; } atomic_long_t;
#define ATOMIC_INIT(i)	{ (i) }
#define atomic_read(v)		__atomic_load_n(&(v)->counter, __ATOMIC_RELAXED)
#define atomic_set(v, i)	__atomic_store_n(&(v)->counter, (i), __ATOMIC_RELAXED)
#define atomic_add(i, v)	((void)__atomic_add_fetch(&(v)->counter, (i), __ATOMIC_RELAXED))
#define atomic_sub(i, v)	((void)__atomic_sub_fetch(&(v)->counter, (i), __ATOMIC_RELAXED))
#define atomic_inc(v)		atomic_add(1, v)
#define atomic_dec(v)		atomic_sub(1, v)
#define atomic_xchg(v, i)	__atomic_exchange_n(&(v)->counter, (i), __ATOMIC_SEQ_CST)
#define atomic_add_return(i, v)	__atomic_add_fetch(&(v)->counter, (i), __ATOMIC_SEQ_CST)
#define atomic_dec_and_test(v)	(__atomic_sub_fetch(&(v)->counter, 1, __ATOMIC_SEQ_CST) == 0)
#define atomic_long_read(v)	atomic_read(v)
#define atomic_long_set(v, i)	atomic_set(v, i)
#define atomic_long_add(i, v)	atomic_add(i, v)
#define atomic_long_sub(i, v)	atomic_sub(i, v)
#define atomic_long_inc(v)	atomic_inc(v)
#define atomic_long_dec(v)	atomic_dec(v)
#define atomic_long_xchg(v, i)	atomic_xchg(v, i)
#define atomic_long_add_return(i, v) atomic_add_return(i, v)
#define atomic_long_dec_and_test(v)	atomic_dec_and_test(v)
#define atomic_long_try_cmpxchg(v, oldp, new)				\
	__atomic_compare_exchange_n(&(v)->counter, (oldp), (new), false,	\
				    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)
#define cmpxchg(p, old, new) ({						\
	__typeof__(*(p)) __old = (old);					\
	__atomic_compare_exchange_n((p), &__old, (new), false,		\
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
	__old;								\
})
#define xchg(p, v)	__atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
#define try_cmpxchg(p, oldp, new)					\
	__atomic_compare_exchange_n((p), (oldp), (new), false,		\
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)
#define set_bit(nr, addr)						\
	((void)__atomic_fetch_or((addr), 1UL << (nr), __ATOMIC_SEQ_CST))

/* Index of the first zero bit of @word, which must have one. */
static inline unsigned long ffz(unsigned long word)
{
	return (unsigned long)__builtin_ctzl(~word);
}

typedef struct { int refs; } refcount_t;
#define refcount_set(r, n)	__atomic_store_n(&(r)->refs, (n), __ATOMIC_RELAXED)
#define refcount_read(r)	__atomic_load_n(&(r)->refs, __ATOMIC_RELAXED)
static inline void refcount_inc(refcount_t *r)
{
	int old = __atomic_fetch_add(&r->refs, 1, __ATOMIC_RELAXED);

	WARN_ON_ONCE(old <= 0);
}

static inline bool refcount_inc_not_zero(refcount_t *r)
{
	int old = __atomic_load_n(&r->refs, __ATOMIC_RELAXED);

	do {
		if (!old)
			return false;
	} while (!__atomic_compare_exchange_n(&r->refs, &old, old + 1, true,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_RELAXED));
	return true;
}

static inline bool refcount_dec_and_test(refcount_t *r)
{
	int old = __atomic_fetch_sub(&r->refs, 1, __ATOMIC_ACQ_REL);

	WARN_ON_ONCE(old <= 0);
	return old == 1;
}

/* Locks: irqsave is meaningless in userspace; a mutex gives exclusion. */
typedef struct { pthread_mutex_t m; } spinlock_t;
#define spin_lock_init(l)	pthread_mutex_init(&(l)->m, NULL)
#define spin_lock(l)		pthread_mutex_lock(&(l)->m)
#define spin_unlock(l)		pthread_mutex_unlock(&(l)->m)
#define spin_lock_irqsave(l, f)	do { (f) = 0; spin_lock(l); } while (0)
#define spin_unlock_irqrestore(l, f) do { (void)(f); spin_unlock(l); } while (0)

/* Sleeping locks, and interrupts (there are none to mask). */
struct mutex { pthread_mutex_t m; };
#define mutex_init(l)		pthread_mutex_init(&(l)->m, NULL)
#define mutex_lock(l)		pthread_mutex_lock(&(l)->m)
#define mutex_unlock(l)		pthread_mutex_unlock(&(l)->m)
#define local_irq_save(f)	do { (f) = 0; } while (0)
#define local_irq_restore(f)	do { (void)(f); } while (0)
#define cpu_relax()		sched_yield()

/*
 * RCU: readers hold a shared lock from their outermost rcu_read_lock(), so
 * synchronize_rcu() (the exclusive lock) waits for every reader that began
 * before it.  Callbacks wait for osh_shim_rcu_barrier().
 */
struct rcu_head {
	struct rcu_head *next;
	void (*func)(struct rcu_head *head);
};
void rcu_read_lock(void);
void rcu_read_unlock(void);
void synchronize_rcu(void);
#define rcu_dereference(p)	__atomic_load_n(&(p), __ATOMIC_CONSUME)
#define rcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head));
void osh_shim_rcu_barrier(void);
typedef void (*rcu_callback_t)(struct rcu_head *head);
/*
 * osh_defer(): userspace has no NMI; with osh_shim_in_nmi set the calls
 * queue until osh_shim_run_deferred(), as the kernel's irq_work would.
 */
extern __thread int osh_shim_in_nmi;
void osh_defer(struct rcu_head *head, rcu_callback_t fn);
long osh_shim_run_deferred(void);

/* Per-CPU data: tests pick the "current CPU" explicitly. */
extern __thread int osh_shim_cpu;
#define NR_CPUS_SHIM	64
#define smp_processor_id()	osh_shim_cpu
#define raw_smp_processor_id()	osh_shim_cpu

/* Doubly linked lists, as include/linux/list.h */
struct list_head {
	struct list_head *next, *prev;
};
#define LIST_HEAD_INIT(name)	{ &(name), &(name) }
#define LIST_HEAD(name)		struct list_head name = LIST_HEAD_INIT(name)

static inline void INIT_LIST_HEAD(struct list_head *list)
{
	list->next = list;
	list->prev = list;
}

static inline void __list_add(struct list_head *n, struct list_head *prev,
			      struct list_head *next)
{
	next->prev = n;
	n->next = next;
	n->prev = prev;
	prev->next = n;
}

static inline void list_add(struct list_head *n, struct list_head *head)
{
	__list_add(n, head, head->next);
}

static inline void list_add_tail(struct list_head *n, struct list_head *head)
{
	__list_add(n, head->prev, head);
}

static inline void list_del(struct list_head *entry)
{
	entry->next->prev = entry->prev;
	entry->prev->next = entry->next;
	entry->next = NULL;
	entry->prev = NULL;
}

static inline void list_del_init(struct list_head *entry)
{
	entry->next->prev = entry->prev;
	entry->prev->next = entry->next;
	INIT_LIST_HEAD(entry);
}

static inline void list_move_tail(struct list_head *entry,
				  struct list_head *head)
{
	entry->next->prev = entry->prev;
	entry->prev->next = entry->next;
	list_add_tail(entry, head);
}

static inline bool list_empty(const struct list_head *head)
{
	return head->next == head;
}

static inline void list_splice(struct list_head *list, struct list_head *head)
{
	if (!list_empty(list)) {
		struct list_head *first = list->next, *last = list->prev;
		struct list_head *at = head->next;

		first->prev = head;
		head->next = first;
		last->next = at;
		at->prev = last;
	}
}

static inline void list_splice_init(struct list_head *list,
				    struct list_head *head)
{
	if (!list_empty(list)) {
		struct list_head *first = list->next, *last = list->prev;
		struct list_head *at = head->next;

		first->prev = head;
		head->next = first;
		last->next = at;
		at->prev = last;
		INIT_LIST_HEAD(list);
	}
}

#define list_entry(ptr, type, member)	container_of(ptr, type, member)
#define list_first_entry(ptr, type, member) list_entry((ptr)->next, type, member)
#define list_next_entry(pos, member) \
	list_entry((pos)->member.next, __typeof__(*(pos)), member)
#define list_prev_entry(pos, member) \
	list_entry((pos)->member.prev, __typeof__(*(pos)), member)
#define list_for_each_entry(pos, head, member)				\
	for (pos = list_first_entry(head, __typeof__(*pos), member);	\
	     &pos->member != (head);					\
	     pos = list_next_entry(pos, member))
#define list_for_each_entry_continue(pos, head, member)			\
	for (pos = list_next_entry(pos, member); &pos->member != (head);	\
	     pos = list_next_entry(pos, member))
#define list_for_each_entry_safe(pos, n, head, member)			\
	for (pos = list_first_entry(head, __typeof__(*pos), member),	\
	     n = list_next_entry(pos, member);				\
	     &pos->member != (head);					\
	     pos = n, n = list_next_entry(n, member))
#define list_for_each_entry_safe_reverse(pos, n, head, member)		\
	for (pos = list_entry((head)->prev, __typeof__(*pos), member),	\
	     n = list_prev_entry(pos, member);				\
	     &pos->member != (head);					\
	     pos = n, n = list_prev_entry(n, member))

/* Hash lists */
struct hlist_node {
	struct hlist_node *next, **pprev;
};
struct hlist_head {
	struct hlist_node *first;
};
#define INIT_HLIST_HEAD(h)	((h)->first = NULL)

static inline void hlist_add_head_rcu(struct hlist_node *n,
				      struct hlist_head *h)
{
	struct hlist_node *first = h->first;

	n->next = first;
	n->pprev = &h->first;
	if (first)
		first->pprev = &n->next;
	__atomic_store_n(&h->first, n, __ATOMIC_RELEASE);
}

static inline void hlist_del_init_rcu(struct hlist_node *n)
{
	if (n->pprev) {
		struct hlist_node *next = n->next;

		__atomic_store_n(n->pprev, next, __ATOMIC_RELEASE);
		if (next)
			next->pprev = n->pprev;
		n->pprev = NULL;
	}
}

#define hlist_entry_safe(ptr, type, member) ({				\
	__typeof__(ptr) ____ptr = (ptr);				\
	____ptr ? container_of(____ptr, type, member) : NULL;		\
})
#define hlist_for_each_entry_rcu(pos, head, member)			\
	for (pos = hlist_entry_safe(__atomic_load_n(&(head)->first,	\
				    __ATOMIC_ACQUIRE),			\
				    __typeof__(*(pos)), member);	\
	     pos;							\
	     pos = hlist_entry_safe(__atomic_load_n(&(pos)->member.next, \
				    __ATOMIC_ACQUIRE),			\
				    __typeof__(*(pos)), member))

#define GOLDEN_RATIO_64 0x61C8864680B583EBull
static inline u32 hash_64(u64 val, unsigned int bits)
{
	return (u32)((val * GOLDEN_RATIO_64) >> (64 - bits));
}

#endif /* OBJCG_SHADOW_ENV_H */
