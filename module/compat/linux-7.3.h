/* SPDX-License-Identifier: GPL-2.0 */
/*
 * trixie-backports' 7.3: objcgs per memcg per node (7.1), root objcgs
 * that are never charged, the task cache of 6.7 filled from the node of
 * the CPU at refresh; a five-slot obj stock taken with local_trylock (an
 * interrupt that finds it held writes through), slab charges per object
 * in the post-alloc hook; the slabobj_ext vector may live in the objects'
 * own padding (stride s->size, a per-slab bit); KFENCE objects have no
 * vector and are never charged.  Included by ../compat.h only.
 */
#define OSH_KERNEL_FAMILY		"7.3"
/* the reference first where it is not one of the four of 6.1 */
#define OSH_DEFAULT_DESIGNS		"v7.3,v6.1,v6.7,v7.1,pernode"
#define OSH_REFERENCE_DESIGN		"v7.3"

#define OSH_HAVE_MEM_CGROUP_ATTACH	1
#define OSH_HAVE_MEM_CGROUP_EXIT	1
#define OSH_FREE_VIA_MEMCG_HOOK		1
/* sched_process_exit(p, group_dead) */
#define OSH_SCHED_EXIT_GROUP_DEAD	1
/* drain_obj_stock_slot(stock, i) runs for empty slots too: look inside */
#define OSH_OBSERVE_SLOT_DRAINS		1
/* page charges are observed at the memcg:mod_memcg_state tracepoint */
#define OSH_OBSERVE_KMEM_TRACEPOINT	1

#define OSH_SYM_PCPU_ALLOC		"pcpu_alloc_noprof"
#define OSH_SYM_ALLOC_BULK		"kmem_cache_alloc_bulk_noprof"
/* kmem_cache_alloc_bulk() returns bool: only %al is defined */
#define OSH_ALLOC_BULK_OK(ret)		((u8)(ret) != 0)
#define OSH_SYM_DRAIN_LOCAL		"drain_local_obj_stock"
#define OSH_SYM_OBSERVE_DRAIN		"drain_obj_stock_slot"
#define OSH_SYM_OBSERVE_KMEM		"mod_memcg_state"

#define OSH_MEMCG_DATA_FLAGS		(__NR_MEMCG_DATA_FLAGS - 1)

#if defined(CONFIG_MEM_ALLOC_PROFILING) || defined(CONFIG_DEBUG_LOCK_ALLOC)
#error "7.3 with allocation profiling or lock debugging: layouts not verified"
#endif

/* struct slab of 7.3 (mm/slab.h), up to its freelist counters */
struct osh_slub_slab_prefix {
	unsigned long flags;
	struct kmem_cache *slab_cache;
	void *slab_list[2];
	void *freelist;
	unsigned int inuse:16;
	unsigned int objects:15;
	unsigned int frozen:1;
	unsigned int obj_exts_in_object:1;
	unsigned int obj_exts_needs_objcg:1;
};

static inline bool osh_memcg_kmem_on(void)
{
	return memcg_kmem_online();
}

/*
 * slab_obj_ext(slab, obj_exts, index)->objcg: the vector's stride is
 * s->size when it lives inside the objects, else one pointer.
 */
static inline struct obj_cgroup *osh_kernel_obj_objcg(const void *obj,
						      const struct kmem_cache *s)
{
	struct folio *folio = virt_to_folio(obj);
	const struct osh_slub_slab_prefix *slab = (const void *)folio;
	unsigned long data = READ_ONCE(folio->memcg_data);
	unsigned long stride = sizeof(struct obj_cgroup *);

	if (is_kfence_address(obj) || !(data & MEMCG_DATA_OBJEXTS) ||
	    !(data & ~OBJEXTS_FLAGS_MASK))
		return NULL;
	if (slab->obj_exts_in_object)
		stride = osh_cache_layout(s)->size;
	data &= ~OBJEXTS_FLAGS_MASK;
	return READ_ONCE(*(struct obj_cgroup **)(data + stride *
						  osh_obj_index(obj, s)));
}

/* struct obj_stock_pcp of 7.3 (mm/memcontrol.c), without debug locks */
struct osh_obj_stock_pcp {
	u8 lock_acquired;		/* local_trylock_t */
	s8 index;
	s16 node_id;
	s16 nr_slab_b[2];
	u16 nr_bytes[5];
	struct obj_cgroup *cached[5];
	struct work_struct work;
};

#define OSH_HAVE_OBJ_STOCK_TRYLOCK	1
extern struct osh_obj_stock_pcp __percpu *osh_kernel_obj_stock;

/*
 * Whether this CPU's obj stock is held by the context we interrupted: the
 * kernel's local_trylock() fails then and the event writes through.
 */
static inline bool osh_kernel_obj_stock_busy(void)
{
	return !in_task() && osh_kernel_obj_stock &&
	       READ_ONCE(this_cpu_ptr(osh_kernel_obj_stock)->lock_acquired);
}

/* The kernel's per-CPU obj_stock, for osh_kernel_obj_stock_busy(). */
static inline int osh_compat_init(void)
{
	osh_kernel_obj_stock = (void __percpu *)osh_kernel_symbol("obj_stock");
	return osh_kernel_obj_stock ? 0 : -ENOENT;
}

/*
 * This CPU's obj stock as it stands: the objcg of each slot and the next
 * round-robin victim.  Called with IRQs off on the CPU; 0 if we
 * interrupted a holder of the stock (it is mid-update).
 */
#define OSH_HAVE_KERNEL_STOCK_SLOTS	1
static inline unsigned int osh_kernel_stock_slots(struct obj_cgroup **objcgs,
						  unsigned int max,
						  unsigned int *victim)
{
	const struct osh_obj_stock_pcp *stock;
	unsigned int i, n;

	if (!osh_kernel_obj_stock)
		return 0;
	stock = this_cpu_ptr(osh_kernel_obj_stock);
	n = ARRAY_SIZE(stock->cached);
	if (READ_ONCE(stock->lock_acquired) || n > max)
		return 0;
	for (i = 0; i < n; i++)
		objcgs[i] = READ_ONCE(stock->cached[i]);
	*victim = READ_ONCE(stock->index);
	return n;
}

/* The node whose active objcg @objcg is in @memcg, or -1 (a reparented one). */
static inline int osh_kernel_objcg_node(struct mem_cgroup *memcg,
					struct obj_cgroup *objcg)
{
	int nid;

	for_each_node(nid)
		if (rcu_access_pointer(memcg->nodeinfo[nid]->objcg) == objcg)
			return nid;
	return -1;
}

/* drain_obj_stock_slot(stock, i): a drain only if the slot holds an objcg */
static inline bool osh_observed_slot_drained(struct pt_regs *regs)
{
	const struct osh_obj_stock_pcp *stock = (void *)osh_regs_arg(regs, 0);
	unsigned int i = osh_regs_arg(regs, 1);

	return i < ARRAY_SIZE(stock->cached) && READ_ONCE(stock->cached[i]);
}

/* Slots drain_local_obj_stock(&stock->work) will drain. */
static inline unsigned int osh_observed_busy_slots(void *work)
{
	const struct osh_obj_stock_pcp *stock =
		container_of(work, struct osh_obj_stock_pcp, work);
	unsigned int i, n = 0;

	for (i = 0; i < ARRAY_SIZE(stock->cached); i++)
		n += !!READ_ONCE(stock->cached[i]);
	return n;
}

static inline bool osh_observed_kmem_delta(struct pt_regs *regs, long *nr)
{
	return false;
}
