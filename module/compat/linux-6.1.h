/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Debian 12's 6.1: the kmem tracepoints carry the kmem_cache and the node
 * (6.0+); no task objcg cache, mem_cgroup_fork() or mem_cgroup_exit() yet
 * (6.7); slab objcgs are a vector of pointers in struct slab (<6.10); one
 * obj stock slot per CPU, charged before the object exists.
 * Included by ../compat.h only.
 */
#define OSH_KERNEL_FAMILY		"6.1"
/* the reference first where it is not one of the four of 6.1 */
#define OSH_DEFAULT_DESIGNS		"v6.1,v6.7,v7.1,pernode"
#define OSH_REFERENCE_DESIGN		"v6.1"

/* mem_cgroup_attach() is only built with the multi-gen LRU in 6.1. */
#define OSH_HAVE_MEM_CGROUP_ATTACH	IS_ENABLED(CONFIG_LRU_GEN)
#define OSH_HAVE_MEM_CGROUP_EXIT	0
/* frees are seen by the kfree/kmem_cache_free tracepoints and free_bulk */
#define OSH_FREE_VIA_MEMCG_HOOK		0
#define OSH_SCHED_EXIT_GROUP_DEAD	0
/* drain_obj_stock() runs at every stock switch, drained or not */
#define OSH_OBSERVE_SLOT_DRAINS		0
/* the stock is taken with interrupts off: never busy for an interrupt */
#define OSH_HAVE_OBJ_STOCK_TRYLOCK	0
/* page charges are observed at memcg_account_kmem() */
#define OSH_OBSERVE_KMEM_TRACEPOINT	0

#define OSH_SYM_PCPU_ALLOC		"pcpu_alloc"
#define OSH_SYM_ALLOC_BULK		"kmem_cache_alloc_bulk"
/* kmem_cache_alloc_bulk() returns int: the number allocated, or 0 */
#define OSH_ALLOC_BULK_OK(ret)		((int)(ret) != 0)
#define OSH_SYM_DRAIN_LOCAL		"drain_local_stock"
#define OSH_SYM_OBSERVE_DRAIN		"drain_obj_stock"
#define OSH_SYM_OBSERVE_KMEM		"memcg_account_kmem"

#define OSH_MEMCG_DATA_FLAGS		MEMCG_DATA_FLAGS_MASK

/* struct slab of 6.1 (mm/slab.h), its first fields */
struct osh_slub_slab_prefix {
	unsigned long page_flags;
	void *list_or_rcu[2];
	struct kmem_cache *slab_cache;
};

static inline bool osh_memcg_kmem_on(void)
{
	return memcg_kmem_enabled();
}

/*
 * The kernel's own objcg for a slab object (slab_objcgs()[obj_to_index]),
 * read before the kernel's free hook clears it.  NULL if not accounted.
 */
static inline struct obj_cgroup *osh_kernel_obj_objcg(const void *obj,
						      const struct kmem_cache *s)
{
	unsigned long data = READ_ONCE(virt_to_folio(obj)->memcg_data);
	struct obj_cgroup **objcgs;

	if (!(data & MEMCG_DATA_OBJCGS))
		return NULL;
	objcgs = (struct obj_cgroup **)(data & ~MEMCG_DATA_FLAGS_MASK);
	return READ_ONCE(objcgs[osh_obj_index(obj, s)]);
}

/* memcg_account_kmem(memcg, nr_pages) */
static inline bool osh_observed_kmem_delta(struct pt_regs *regs, long *nr)
{
	*nr = (int)osh_regs_arg(regs, 1);
	return true;
}
