/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shadow kmem accounting: obj_cgroups, per-CPU byte stocks, page charges
 * and reparenting, for several accounting designs fed by one event stream.
 *
 * The algorithms follow mm/memcontrol.c of the reference kernel (6.1):
 * obj_cgroup_charge(), refill_obj_stock(), drain_obj_stock(),
 * mod_objcg_state() and memcg_reparent_objcgs().  A design with one stock
 * slot keyed by objcg and one objcg per memcg is exactly 6.1; the other
 * knobs model later kernels and proposals.
 *
 * Concurrency, as in the kernel: stocks and hot counters are per CPU and
 * used with interrupts off by the caller (struct osh_cpu_ctx); objcg
 * lists are changed under acct->objcg_lock, only at cgroup offline;
 * everything else is atomic.  Objcgs and memcg records are freed by RCU.
 */
#ifndef OBJCG_SHADOW_ACCT_H
#define OBJCG_SHADOW_ACCT_H

#include "osh_env.h"
#include "memcg_tree.h"
#include "objmap.h"

#define OSH_STOCK_MAX_SLOTS	8
#define OSH_DESIGN_NAME_LEN	32
#define OSH_MAX_NODES		64	/* shadow per-node state is sized by nr_nodes */

/* How a design's per-CPU obj stock picks and batches. */
enum osh_stock_kind {
	/* 6.1/6.12: slots keyed by objcg, least recently used one replaced,
	 * slab vmstat batched per slot and node
	 */
	OSH_STOCK_LRU,
	/* 7.3: first empty slot, else round robin; u16 byte counts; one slab
	 * vmstat batch per CPU keyed by (slot, node); an interrupt that finds
	 * the stock held writes through
	 */
	OSH_STOCK_ROUND_ROBIN,
};

enum osh_task_cache {
	OSH_TASK_CACHE_NONE,		/* look the objcg up at every allocation */
	OSH_TASK_CACHE_SINGLE,		/* one cached objcg per task (v6.7+) */
	OSH_TASK_CACHE_PERNODE,		/* one cached objcg per node per task */
};

/* One accounting design: a point in the space of DESIGN.md. */
struct osh_design {
	char name[OSH_DESIGN_NAME_LEN];
	bool per_node_objcg;		/* memcg has one objcg per NUMA node */
	enum osh_task_cache task_cache;
	unsigned int stock_slots;	/* per-CPU obj stock slots, 1 in 6.1 */
	bool stock_by_memcg;		/* a slot matches any objcg of its memcg */
	enum osh_stock_kind stock_kind;
	bool objcg_of_page_node;	/* per-node objcg of the page, not the CPU */
	/*
	 * A dead CPU's obj stock is drained (6.12 and later): 6.1 drains only
	 * its page stock and leaves the obj stock's bytes and objcg behind.
	 */
	bool cpu_dead_drains_obj_stock;
	/*
	 * memcgptr (before 5.9): per-memcg slab caches.  Not an obj_cgroup
	 * design: it runs in the slab model (slabmodel.h), not in acct.
	 */
	bool per_memcg_caches;
};

enum osh_slab_type {
	OSH_SLAB_RECLAIMABLE,
	OSH_SLAB_UNRECLAIMABLE,
	OSH_NR_SLAB_TYPES,
	/* a percpu allocation: charged through the obj stock, no slab vmstat */
	OSH_OBJ_PERCPU = OSH_NR_SLAB_TYPES,
};

/* Exact per-node byte counters of live objects, per objcg. */
enum osh_objcg_stat {
	OSH_STAT_SLAB_RECLAIMABLE,	/* = OSH_SLAB_RECLAIMABLE */
	OSH_STAT_SLAB_UNRECLAIMABLE,	/* = OSH_SLAB_UNRECLAIMABLE */
	OSH_STAT_KERNEL_STACK,
	OSH_STAT_PERCPU,		/* MEMCG_PERCPU_B, kept on node 0 */
	OSH_NR_OBJCG_STATS,
};

struct osh_acct;

struct osh_objcg {
	atomic_long_t ref;		/* objects, stock slots, the memcg */
	struct osh_memcg *memcg;	/* referenced; swapped on reparent */
	u64 born_id;			/* cgroup id of the memcg it was made for */
	atomic_t nr_charged_bytes;	/* sub-page remainder, as the kernel */
	struct list_head list;		/* inherited objcgs; objcg_lock */
	struct rcu_head rcu;
	struct osh_acct *acct;
	short node;			/* NUMA node, -1 for a per-memcg objcg */
	u8 design;
	atomic_long_t nr_objects;	/* live slab objects charged to it */
	/* slab objects ever charged to it; the report design's objcgs only */
	atomic_long_t nr_allocs;
	atomic_long_t stat[];		/* [node][OSH_NR_OBJCG_STATS] */
};

/* Per memcg, per design. */
struct osh_mdesign {
	struct osh_objcg **objcg;	/* active objcg(s), RCU; [node] or [0] */
	struct list_head objcg_list;	/* inherited objcgs; objcg_lock */
	atomic_long_t kmem_pages;	/* MEMCG_KMEM, local: charged pages */
	atomic_long_t *vmstat;		/* [node][type]: flushed slab bytes */
	atomic_t charged_bytes;		/* remainder of memcg-keyed stocks */
	unsigned int objcg_alloc_failed; /* objcgs missing: the parent's used */
};

struct osh_stock_slot {
	struct osh_objcg *objcg;	/* referenced, or NULL */
	unsigned int nr_bytes;		/* pre-charged bytes */
	int node;			/* cached_pgdat, -1 for none */
	int nr_slab_b[OSH_NR_SLAB_TYPES];	/* vmstat bytes not yet flushed */
	u64 last_use;			/* victim choice for multi-slot stocks */
};

struct osh_stock {
	u64 clock;
	struct osh_stock_slot slot[OSH_STOCK_MAX_SLOTS];
	/* OSH_STOCK_ROUND_ROBIN: the next victim and the one vmstat batch */
	unsigned int drain_idx;
	int stat_slot;			/* slot owning stat_b[], -1 for none */
	int stat_node;
	int stat_b[OSH_NR_SLAB_TYPES];
};

/* Per design, per CPU: what the design would do, in counts. */
struct osh_dcounters {
	unsigned long allocs;		/* objects charged */
	unsigned long frees;		/* objects uncharged */
	unsigned long stock_hits;	/* charge served from the stock */
	unsigned long stock_misses;	/* charge needed page charging */
	unsigned long drain_objcg;	/* slot drained: objcg switch */
	unsigned long drain_on_free;	/* of which a free switched it */
	unsigned long drain_node;	/* vmstat flushed: node switch */
	unsigned long drain_explicit;	/* drained on request */
	unsigned long charge_ops;	/* page counter charges */
	unsigned long charge_pages;
	unsigned long uncharge_ops;	/* page counter uncharges */
	unsigned long uncharge_pages;
	unsigned long vmstat_flushes;	/* per-memcg vmstat updates */
	unsigned long remote_objcg_cpu;	/* objcg node != CPU node */
	unsigned long seeded_slots;	/* taken at load from the kernel's stock */
	unsigned long seeded_foreign;	/* of which the shadow had no objcg */
	unsigned long remote_objcg_page; /* objcg node != object's page node */
	unsigned long root_bypass;	/* no objcg: task in the root memcg */
	unsigned long task_refresh;	/* task cache refreshed */
	unsigned long task_retry;	/* refresh retried: attach raced */
	unsigned long task_state_missing; /* no task state: root objcg used */
	unsigned long stock_takes;	/* slot (re)assigned: drain_obj_stock() */
	unsigned long page_allocs;	/* page-level kmem charges */
	unsigned long page_frees;
	unsigned long stock_busy;	/* kernel's stock trylock failed: written through */
};

#define OSH_NR_DCOUNTERS (sizeof(struct osh_dcounters) / sizeof(unsigned long))

/* Longs of a map entry's value: struct osh_objinfo and an objcg per design. */
#define OSH_ENTRY_LONGS		(2 + OSH_MAX_DESIGNS)

/*
 * Each CPU keeps the object records it used last (see osh_objrec): 32 sets
 * chosen by a hash of the charge, of 2 records each, the more recent
 * first.  A workload cycles through a few charges per operation (a pipe:
 * five caches), which direct-mapped slots would often make collide.
 */
#define OSH_OBJREC_SET_BITS	5
#define OSH_OBJREC_WAYS		2
#define OSH_OBJREC_CACHE	(OSH_OBJREC_WAYS << OSH_OBJREC_SET_BITS)

struct osh_objrec;

/* Per CPU: one stock and one counter set per design. */
struct osh_cpu_ctx {
	int cpu;
	int node;			/* this CPU's NUMA node */
	unsigned int depth;		/* recursion guard */
	bool kernel_stock_busy;		/* this event found the kernel's stock held */
	int event_node;			/* node of the event's page, -1 unknown */
	unsigned long recursion;	/* events dropped: handler re-entered */
	struct osh_stock stock[OSH_MAX_DESIGNS];
	struct osh_dcounters cnt[OSH_MAX_DESIGNS];
	/*
	 * A map entry's value as it is built, and as it leaves the map
	 * (freed, or found stale): the owner runs one event at a time, so
	 * no event zeroes buffers on its stack for them (the kernel's
	 * INIT_STACK_ALL_ZERO).
	 */
	unsigned long new_entry[OSH_ENTRY_LONGS];
	unsigned long entry[OSH_ENTRY_LONGS];
	struct osh_objrec *objrec_cache[OSH_OBJREC_CACHE];
};

/* Rare, global events; all visible in debugfs. */
enum osh_acct_event {
	OSH_EV_OBJ_UNTRACKED_FREE,	/* accounted object not in the map */
	OSH_EV_OBJ_MAP_FULL,		/* object dropped: map full */
	OSH_EV_OBJ_STALE,		/* entry replaced: its free was missed */
	OSH_EV_OBJ_NO_RECORD,		/* object dropped: no memory for its record */
	OSH_EV_PAGE_UNTRACKED_FREE,
	OSH_EV_PAGE_MAP_FULL,
	OSH_EV_PAGE_STALE,
	OSH_EV_OBJCG_ALLOC_FAILED,	/* memcg left without objcg (counted) */
	OSH_EV_REPARENT_OPS,		/* memcg offlines reparented */
	OSH_EV_NO_PARENT,		/* offline without a parent record */
	OSH_EV_OBJCG_RELEASED,		/* objcgs freed after their last ref */
	OSH_EV_RELEASE_UNCHARGED_PAGES,	/* pages uncharged at objcg release */
	OSH_NR_ACCT_EVENTS,
};

/*
 * Per-task shadow state of the task-cache designs, kept outside
 * task_struct.  word[d] is a tagged pointer, bit 0 the update flag set by
 * attach: for OSH_TASK_CACHE_SINGLE the cached objcg (v6.7), for
 * OSH_TASK_CACHE_PERNODE the per-node array (nodes[] below).  Only the
 * task itself refreshes it; attachers only set the flag.
 */
#define OSH_TASK_UPDATE		1UL

struct osh_task {
	unsigned long word[OSH_MAX_DESIGNS];
	struct rcu_head rcu;		/* osh_defer(), then call_rcu() */
	struct osh_acct *acct;		/* for the deferred release */
	struct osh_objcg *nodes[];	/* nr_nodes per PERNODE design */
};

/* Re-read the memcg of the task at every refresh attempt (it may move). */
typedef struct osh_memcg *(*osh_task_memcg_fn)(void *arg);

struct osh_objinfo {
	u32 size;			/* bytes charged (obj_full_size) */
	s16 node;			/* node of the object's page */
	u8 type;			/* enum osh_slab_type, or page kind */
	u8 flags;
	struct osh_objcg *objcg[];	/* one per design, referenced */
};

/*
 * A slab object's entry in the object map is a pointer to its record:
 * one record is shared by the objects charged alike (same size, node,
 * type, flags and objcg of every design), so that an object costs its
 * map slot and not a copy of the objcgs.  @refs counts the objects, and
 * one more while a CPU's record cache holds it; only that CPU takes new
 * references.  Freed an RCU grace period after the last one: walks follow
 * it under rcu_read_lock().
 */
struct osh_objrec {
	atomic_long_t refs;
	struct rcu_head rcu;		/* osh_defer(), then call_rcu() */
	struct osh_objinfo info;	/* ends in an objcg per design */
};

/* What a tracked kmem page is used for, beyond its page charge. */
#define OSH_OBJINFO_STACK	0x1	/* kernel stack: NR_KERNEL_STACK_KB */
#define OSH_OBJINFO_LARGE_KMALLOC 0x2	/* kmalloc > 8K: NR_SLAB_UNRECLAIMABLE_B */
/*
 * A slab object the shadow charged although the kernel's own vector holds
 * no objcg for it.  While there are none, a free of an object the kernel
 * did not charge needs no look-up: that is almost every free.
 */
#define OSH_OBJINFO_KERNEL_UNCHARGED 0x4

struct osh_acct {
	unsigned int nr_designs;
	unsigned int nr_nodes;
	unsigned int nr_cpus;		/* cpu ids are below this */
	struct osh_design designs[OSH_MAX_DESIGNS];
	spinlock_t objcg_lock;		/* objcg lists, as the kernel's */
	struct osh_objmap objmap;	/* slab objects */
	struct osh_objmap pagemap;	/* kmem pages, keyed by struct page */
	atomic_long_t nr_kernel_uncharged; /* live OSH_OBJINFO_KERNEL_UNCHARGED */
	atomic_long_t nr_objrecs;	/* live struct osh_objrec */
	/* a record's memory from event context (NULL: kmalloc(GFP_ATOMIC)) */
	void *(*objrec_alloc)(size_t size);
	struct osh_cpu_ctx *(*cpu_ctx)(struct osh_acct *acct, int cpu);
	atomic_long_t events[OSH_NR_ACCT_EVENTS];
	/* per design: reparenting cost with and without the objcg indirection
	 * (objcg->memcg swaps, and the objects a design without objcgs would
	 * have had to re-point); the stats file shows their sums
	 */
	atomic_long_t objcgs_swapped[OSH_MAX_DESIGNS];
	atomic_long_t objects_repointed[OSH_MAX_DESIGNS];
	bool tearing_down;		/* objects are being forgotten */
	int reference;			/* design of the running kernel, or -1 */
	/* where each PERNODE design's array starts in osh_task.nodes[] */
	unsigned int task_nodes_off[OSH_MAX_DESIGNS];
	unsigned int task_nodes_total;
};

/* The node whose per-node objcg design @d charges for this CPU's event. */
static inline int osh_objcg_node(const struct osh_acct *acct, unsigned int d,
				 const struct osh_cpu_ctx *ctx)
{
	if (acct->designs[d].objcg_of_page_node && ctx->event_node >= 0 &&
	    ctx->event_node < (int)acct->nr_nodes)
		return ctx->event_node;
	return ctx->node;
}

/*
 * The design whose objcgs the reports follow (slabinfo, pins, allocation
 * counts): the running kernel's, or the first.
 */
static inline unsigned int osh_acct_report_design(const struct osh_acct *acct)
{
	return acct->reference >= 0 ? acct->reference : 0;
}

/*
 * Whether every slab object the shadow holds is one the kernel charged
 * too, so that a free the kernel's vector says was not charged can skip
 * the object map.  Written only for the rare objects it counts.
 */
static inline bool osh_acct_kernel_charged_all(struct osh_acct *acct)
{
	return !atomic_long_read(&acct->nr_kernel_uncharged);
}

static inline size_t osh_objinfo_size(const struct osh_acct *acct)
{
	return sizeof(struct osh_objinfo) +
	       acct->nr_designs * sizeof(struct osh_objcg *);
}

/* Bytes of one struct osh_objrec (before the allocator rounds them up). */
static inline size_t osh_objrec_bytes(const struct osh_acct *acct)
{
	return offsetof(struct osh_objrec, info) + osh_objinfo_size(acct);
}

int osh_design_parse(struct osh_design *designs, unsigned int max,
		     const char *list, char *err, size_t err_len);
const char *osh_design_known_names(void);
unsigned int osh_design_take_slab_layouts(struct osh_design *designs,
					  unsigned int nr, bool *memcgptr);

int osh_acct_init(struct osh_acct *acct, const struct osh_design *designs,
		  unsigned int nr_designs, unsigned int nr_nodes,
		  unsigned int nr_cpus, unsigned int objmap_bits,
		  unsigned int pagemap_bits, void *(*alloc)(size_t size),
		  void (*free_fn)(void *p),
		  void (*grow_needed)(struct osh_objmap *map));
void osh_acct_destroy(struct osh_acct *acct);
void osh_acct_cpu_init(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
		       int cpu, int node);
void osh_acct_drain_cpu(struct osh_acct *acct, struct osh_cpu_ctx *ctx);
bool osh_acct_seed_stock(struct osh_acct *acct, unsigned int d,
			 struct osh_cpu_ctx *ctx, unsigned int victim,
			 struct osh_objcg *const *held, unsigned int nr);
void osh_acct_cpu_dead(struct osh_acct *acct, struct osh_cpu_ctx *ctx);
void osh_acct_cpu_online(struct osh_cpu_ctx *ctx, int node);
void osh_acct_teardown(struct osh_acct *acct, struct osh_memcg_tree *tree);

int osh_acct_memcg_online(struct osh_acct *acct, struct osh_memcg *memcg,
			  gfp_t gfp);
void osh_acct_memcg_offline(struct osh_acct *acct, struct osh_memcg *memcg);
void osh_acct_memcg_freed(struct osh_acct *acct, struct osh_memcg *memcg);
void osh_acct_memcg_release(struct osh_memcg *memcg);

struct osh_objcg *osh_objcg_tryget_active(struct osh_acct *acct,
					  unsigned int d,
					  struct osh_memcg *memcg, int node);
struct osh_objcg *osh_acct_pick_objcg(struct osh_acct *acct, unsigned int d,
				      struct osh_cpu_ctx *ctx,
				      struct osh_memcg *memcg);
struct osh_objcg *osh_acct_task_objcg(struct osh_acct *acct, unsigned int d,
				      struct osh_cpu_ctx *ctx,
				      struct osh_task *task,
				      osh_task_memcg_fn task_memcg, void *arg);
struct osh_task *osh_task_alloc(struct osh_acct *acct, gfp_t gfp);
void osh_task_mark_update(struct osh_acct *acct, struct osh_task *task);
void osh_task_release(struct osh_acct *acct, struct osh_task *task);
void osh_task_free(struct osh_task *task);
void osh_objcg_get(struct osh_objcg *objcg);
void osh_objcg_put(struct osh_objcg *objcg);

int osh_acct_pick_all(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
		      struct osh_memcg *memcg, struct osh_task *task,
		      osh_task_memcg_fn task_memcg, void *arg,
		      struct osh_objcg **picked);
int osh_acct_slab_alloc(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			struct osh_memcg *memcg, struct osh_objcg **picked,
			unsigned long ptr, unsigned int size, int node,
			enum osh_slab_type type, unsigned int flags);
bool osh_acct_slab_free(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			unsigned long ptr);
int osh_acct_page_alloc(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			struct osh_memcg *memcg, struct osh_objcg **picked,
			unsigned long page, unsigned int nr_pages, int node);
bool osh_acct_page_free(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			unsigned long page);
bool osh_acct_mark_page(struct osh_acct *acct, unsigned long page,
			unsigned int kind);

struct osh_buf;
void osh_acct_dump_memcgs(struct osh_acct *acct,
			  struct osh_memcg_tree *tree, unsigned int d,
			  struct osh_buf *ob);
void osh_acct_dump_designs(struct osh_acct *acct, struct osh_buf *ob);
void osh_acct_dump_events(struct osh_acct *acct, struct osh_buf *ob);
void osh_acct_dump_pins(struct osh_acct *acct, struct osh_memcg_tree *tree,
			unsigned int d, struct osh_buf *ob);
void osh_acct_sum_counters(struct osh_acct *acct, unsigned int d,
			   struct osh_dcounters *sum);
struct osh_live_totals {
	unsigned long objects;		/* slab objects in the object map */
	unsigned long bytes;		/* their obj_full_size() sum */
	unsigned long pages;		/* kmem pages in the page map */
	unsigned long large_kmalloc_bytes;
	unsigned long stack_bytes;
	unsigned long percpu_objects;	/* percpu allocations in the object map */
	unsigned long percpu_bytes;
};

void osh_acct_live_totals(struct osh_acct *acct, struct osh_live_totals *t);

#endif /* OBJCG_SHADOW_ACCT_H */
