// SPDX-License-Identifier: GPL-2.0
/*
 * Feeds the slab page model (core/slabmodel.c) of the memcgptr design.
 *
 * The model's pools are shared by all CPUs, as SLUB's node lists are, and
 * it allocates as it grows: it cannot run in the allocation tracepoints.
 * Handlers append fixed-size records to a per-CPU log instead (interrupts
 * off, no lock, no allocation); a worker replays the logs in process
 * context under osh_sm_mutex, in the order of one global sequence number,
 * and stops at a gap (a record still being written on another CPU), so an
 * object's free is never replayed before its allocation.  A full log
 * drops the record without taking a number: counted, and shown.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/irq_work.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <objcg_shadow/outbuf.h>
#include <objcg_shadow/slabmodel.h>
#include "compat.h"
#include "osh_module.h"

#define OSH_SMLOG_BITS		13
#define OSH_SMLOG_SIZE		BIT(OSH_SMLOG_BITS)
#define OSH_SMLOG_INTERVAL	(HZ / 20)

enum osh_smrec_op {
	OSH_SMREC_ALLOC,
	OSH_SMREC_FREE,
	OSH_SMREC_OFFLINE,
};

struct osh_smrec {
	u64 seq;
	unsigned long ptr;		/* OFFLINE: the memcg's id */
	unsigned long cache;		/* OFFLINE: the parent's id */
	u64 memcg;
	u32 size;
	u16 objects;
	u16 min_partial;
	u16 cpu;
	u16 node;
	u8 order;
	u8 op;
	u8 whole;			/* SLAB_ACCOUNT: all its objects are logged */
};

struct osh_smlog {
	unsigned long head;		/* written by its CPU, irqs off */
	unsigned long tail;		/* written by the replayer */
	unsigned long dropped;		/* records lost: the log was full */
	struct irq_work kick;
	struct osh_smrec *rec;
};

bool osh_slabmodel_enabled __read_mostly;

static DEFINE_PER_CPU(struct osh_smlog, osh_smlogs);
static atomic64_t osh_smlog_seq;
static DEFINE_MUTEX(osh_sm_mutex);
static struct osh_sm osh_sm;		/* osh_sm_mutex */
static u64 osh_smlog_next;		/* osh_sm_mutex: next seq to replay */
static unsigned long osh_smlog_replayed;	/* osh_sm_mutex */
static atomic_long_t osh_smlog_kfence;	/* objects KFENCE placed: not modelled */
static struct delayed_work osh_sm_work;
static bool osh_sm_ready;

static void osh_smlog_kick(struct irq_work *work)
{
	mod_delayed_work(system_wq, &osh_sm_work, 0);
}

static void osh_smlog_put(struct osh_smrec *r)
{
	struct osh_smlog *log;
	unsigned long flags, used;

	local_irq_save(flags);
	log = this_cpu_ptr(&osh_smlogs);
	/* pairs with the replayer's release: it has read the records it freed */
	used = log->head - smp_load_acquire(&log->tail);
	if (unlikely(used >= OSH_SMLOG_SIZE)) {
		log->dropped++;
		goto out;
	}
	r->seq = atomic64_inc_return(&osh_smlog_seq);
	log->rec[log->head & (OSH_SMLOG_SIZE - 1)] = *r;
	/* the record is written before the replayer can see it */
	smp_store_release(&log->head, log->head + 1);
	if (used == OSH_SMLOG_SIZE / 2)
		irq_work_queue(&log->kick);
out:
	local_irq_restore(flags);
}

/* The model's id of a memcg: the root, and no memcg, are one pool. */
static u64 osh_sm_memcg_id(const struct osh_memcg *memcg)
{
	return memcg && memcg->parent_id ? memcg->id : OSH_SM_ROOT_MEMCG;
}

/**
 * osh_slabmodel_log_alloc() - log an accounted slab object for the model
 * @ptr: the object
 * @s: its cache
 * @memcg: the shadow memcg charged, or NULL for none (the root)
 *
 * Context: allocation tracepoint handler.
 */
void osh_slabmodel_log_alloc(const void *ptr, struct kmem_cache *s,
			     const struct osh_memcg *memcg)
{
	const struct osh_slub_cache_prefix *l = osh_cache_layout(s);
	struct folio *folio;
	struct osh_smrec r;

	/* a KFENCE object sits alone on a guarded page: no slab to model */
	if (unlikely(is_kfence_address(ptr))) {
		atomic_long_inc(&osh_smlog_kfence);
		return;
	}
	folio = virt_to_folio(ptr);
	r.op = OSH_SMREC_ALLOC;
	r.ptr = (unsigned long)ptr;
	r.cache = (unsigned long)s;
	r.memcg = osh_sm_memcg_id(memcg);
	r.size = l->size;
	r.order = folio_order(folio);
	r.objects = min_t(unsigned long, (PAGE_SIZE << r.order) / l->size,
			  OSH_SM_MAX_OBJECTS);
	r.min_partial = min_t(unsigned long, l->min_partial, U16_MAX);
	r.cpu = raw_smp_processor_id();
	r.node = folio_nid(folio);
	r.whole = !!(l->flags & SLAB_ACCOUNT);
	osh_smlog_put(&r);
}

/**
 * osh_slabmodel_log_free() - log the free of an object the model may hold
 * @ptr: the object
 *
 * Context: free tracepoint or kprobe handler.
 */
void osh_slabmodel_log_free(const void *ptr)
{
	struct osh_smrec r = { .op = OSH_SMREC_FREE, .ptr = (unsigned long)ptr };

	osh_smlog_put(&r);
}

/**
 * osh_slabmodel_log_offline() - log a memcg's offline for the model
 * @memcg: the memcg going offline
 *
 * Context: process (css_offline kretprobe or the load-time walk).
 */
void osh_slabmodel_log_offline(const struct osh_memcg *memcg)
{
	struct osh_smrec r = {
		.op = OSH_SMREC_OFFLINE,
		.ptr = osh_sm_memcg_id(memcg),
		.cache = osh_sm_memcg_id(memcg->parent),
	};

	osh_smlog_put(&r);
}

static void osh_sm_apply(const struct osh_smrec *r)
{
	char name[OSH_SM_NAME_LEN];
	struct osh_sm_alloc a;

	switch (r->op) {
	case OSH_SMREC_ALLOC:
		a = (struct osh_sm_alloc) {
			.ptr = r->ptr, .cache = r->cache, .memcg = r->memcg,
			.cpu = r->cpu, .node = r->node, .whole = r->whole,
			.geo = { .size = r->size, .objects = r->objects,
				 .order = r->order, .min_partial = r->min_partial },
		};
		if (!osh_sm_has_cache(&osh_sm, r->cache) &&
		    osh_cache_name(r->cache, name, sizeof(name)))
			a.name = name;
		osh_sm_alloc(&osh_sm, &a);
		break;
	case OSH_SMREC_FREE:
		osh_sm_free(&osh_sm, r->ptr);
		break;
	case OSH_SMREC_OFFLINE:
		osh_sm_offline(&osh_sm, r->ptr, r->cache);
		break;
	}
}

/* Replays every record up to the first gap in the sequence. */
static void osh_sm_replay(void)
{
	lockdep_assert_held(&osh_sm_mutex);
	for (;;) {
		struct osh_smlog *best = NULL;
		u64 best_seq = U64_MAX;
		int cpu;

		for_each_possible_cpu(cpu) {
			struct osh_smlog *log = per_cpu_ptr(&osh_smlogs, cpu);
			const struct osh_smrec *r;

			/* pairs with osh_smlog_put(): the record is whole */
			if (log->tail == smp_load_acquire(&log->head))
				continue;
			r = &log->rec[log->tail & (OSH_SMLOG_SIZE - 1)];
			if (r->seq < best_seq) {
				best_seq = r->seq;
				best = log;
			}
		}
		if (!best || best_seq != osh_smlog_next)
			break;
		osh_sm_apply(&best->rec[best->tail & (OSH_SMLOG_SIZE - 1)]);
		/* the slot is read before its CPU may reuse it */
		smp_store_release(&best->tail, best->tail + 1);
		osh_smlog_next++;
		if (!(++osh_smlog_replayed % 1024))
			cond_resched();
	}
}

static void osh_sm_worker(struct work_struct *work)
{
	mutex_lock(&osh_sm_mutex);
	osh_sm_replay();
	mutex_unlock(&osh_sm_mutex);
	if (READ_ONCE(osh_sm_ready))
		schedule_delayed_work(&osh_sm_work, OSH_SMLOG_INTERVAL);
}

/**
 * osh_slabmodel_dump() - debugfs "slabmodel": replay, then the model
 * @ob: output
 */
void osh_slabmodel_dump(struct osh_buf *ob)
{
	unsigned long dropped = 0;
	int cpu;

	if (!READ_ONCE(osh_slabmodel_enabled)) {
		osh_buf_printf(ob, "enabled=0 (add memcgptr to designs= to run the slab model)\n");
		return;
	}
	for_each_possible_cpu(cpu)
		dropped += READ_ONCE(per_cpu_ptr(&osh_smlogs, cpu)->dropped);
	mutex_lock(&osh_sm_mutex);
	osh_sm_replay();
	osh_buf_printf(ob, "enabled=1 log_records=%lu replayed=%lu dropped=%lu",
		       OSH_SMLOG_SIZE, osh_smlog_replayed, dropped);
	osh_buf_printf(ob, " kfence=%lu cache_names=%d\n",
		       atomic_long_read(&osh_smlog_kfence), osh_cache_names_known());
	osh_sm_dump(&osh_sm, ob);
	mutex_unlock(&osh_sm_mutex);
}

/**
 * osh_slabmodel_init() - allocate the logs and the model, start replaying
 *
 * Return: 0 or -ENOMEM.
 */
int osh_slabmodel_init(void)
{
	int cpu, err;

	err = osh_sm_init(&osh_sm, nr_cpu_ids, nr_node_ids);
	if (err)
		return err;
	for_each_possible_cpu(cpu) {
		struct osh_smlog *log = per_cpu_ptr(&osh_smlogs, cpu);

		log->rec = vmalloc_array(OSH_SMLOG_SIZE, sizeof(*log->rec));
		if (!log->rec)
			goto free_logs;
		log->head = 0;
		log->tail = 0;
		log->dropped = 0;
		init_irq_work(&log->kick, osh_smlog_kick);
	}
	atomic64_set(&osh_smlog_seq, 0);
	osh_smlog_next = 1;
	osh_smlog_replayed = 0;
	INIT_DELAYED_WORK(&osh_sm_work, osh_sm_worker);
	WRITE_ONCE(osh_sm_ready, true);
	schedule_delayed_work(&osh_sm_work, OSH_SMLOG_INTERVAL);
	WRITE_ONCE(osh_slabmodel_enabled, true);
	return 0;

free_logs:
	for_each_possible_cpu(cpu) {
		vfree(per_cpu_ptr(&osh_smlogs, cpu)->rec);
		per_cpu_ptr(&osh_smlogs, cpu)->rec = NULL;
	}
	osh_sm_destroy(&osh_sm);
	return -ENOMEM;
}

/**
 * osh_slabmodel_exit() - stop the worker, free the logs and the model
 *
 * Context: after the hooks are detached; a no-op if never initialized.
 */
void osh_slabmodel_exit(void)
{
	int cpu;

	if (!osh_sm_ready)
		return;
	WRITE_ONCE(osh_slabmodel_enabled, false);
	WRITE_ONCE(osh_sm_ready, false);
	for_each_possible_cpu(cpu)
		irq_work_sync(&per_cpu_ptr(&osh_smlogs, cpu)->kick);
	cancel_delayed_work_sync(&osh_sm_work);
	for_each_possible_cpu(cpu) {
		vfree(per_cpu_ptr(&osh_smlogs, cpu)->rec);
		per_cpu_ptr(&osh_smlogs, cpu)->rec = NULL;
	}
	osh_sm_destroy(&osh_sm);
}
