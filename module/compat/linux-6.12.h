/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Debian 13's 6.12: the task caches its objcg (task->objcg, 6.7) and uses
 * it until mem_cgroup_exit(), after exit_mm() too; slab objcgs live in the
 * slabobj_ext vector (obj_exts, 6.10) and are charged after allocation,
 * one charge per batch; kmem_cache_charge() charges existing objects;
 * memcg_account_kmem() is gone.  The obj stock is 6.1's, step for step.
 * Included by ../compat.h only.
 */
#define OSH_KERNEL_FAMILY		"6.12"
/* the reference first where it is not one of the four of 6.1 */
#define OSH_DEFAULT_DESIGNS		"v6.1,v6.7,v7.1,pernode"
#define OSH_REFERENCE_DESIGN		"v6.7"

#define OSH_HAVE_MEM_CGROUP_ATTACH	1
#define OSH_HAVE_MEM_CGROUP_EXIT	1
/* __memcg_slab_free_hook() is global: it sees charged frees on every path */
#define OSH_FREE_VIA_MEMCG_HOOK		1
#define OSH_SCHED_EXIT_GROUP_DEAD	0
#define OSH_OBSERVE_SLOT_DRAINS		0
/* the stock is taken with interrupts off: never busy for an interrupt */
#define OSH_HAVE_OBJ_STOCK_TRYLOCK	0
/* page charges are observed at __mod_memcg_state(MEMCG_KMEM) */
#define OSH_OBSERVE_KMEM_TRACEPOINT	0

#define OSH_SYM_PCPU_ALLOC		"pcpu_alloc_noprof"
#define OSH_SYM_ALLOC_BULK		"kmem_cache_alloc_bulk_noprof"
/* kmem_cache_alloc_bulk() returns int: the number allocated, or 0 */
#define OSH_ALLOC_BULK_OK(ret)		((int)(ret) != 0)
#define OSH_SYM_DRAIN_LOCAL		"drain_local_stock"
#define OSH_SYM_OBSERVE_DRAIN		"drain_obj_stock"
#define OSH_SYM_OBSERVE_KMEM		"__mod_memcg_state"

#define OSH_MEMCG_DATA_FLAGS		(__NR_MEMCG_DATA_FLAGS - 1)

/* struct slab of 6.12 (mm/slab.h), its first fields */
struct osh_slub_slab_prefix {
	unsigned long page_flags;
	struct kmem_cache *slab_cache;
};

static inline bool osh_memcg_kmem_on(void)
{
	return memcg_kmem_online();
}

/* slab_obj_exts(slab)[obj_to_index()].objcg: one pointer per object */
static inline struct obj_cgroup *osh_kernel_obj_objcg(const void *obj,
						      const struct kmem_cache *s)
{
	unsigned long data = READ_ONCE(virt_to_folio(obj)->memcg_data);
	struct obj_cgroup **objcgs;

	if (!(data & MEMCG_DATA_OBJEXTS) || !(data & ~OBJEXTS_FLAGS_MASK))
		return NULL;
	objcgs = (struct obj_cgroup **)(data & ~OBJEXTS_FLAGS_MASK);
	return READ_ONCE(objcgs[osh_obj_index(obj, s)]);
}

/* __mod_memcg_state(memcg, idx, val): MEMCG_KMEM is in pages */
static inline bool osh_observed_kmem_delta(struct pt_regs *regs, long *nr)
{
	if ((int)osh_regs_arg(regs, 1) != MEMCG_KMEM)
		return false;
	*nr = (int)osh_regs_arg(regs, 2);
	return true;
}
