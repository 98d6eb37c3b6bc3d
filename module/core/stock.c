// SPDX-License-Identifier: GPL-2.0
/*
 * Per-CPU obj stocks.  With one slot keyed by objcg this is, step for
 * step, the 6.1 memcg_stock_pcp obj part: consume_obj_stock(),
 * refill_obj_stock(), drain_obj_stock(), mod_objcg_state() and
 * obj_cgroup_charge().  More slots, or slots keyed by memcg, model the
 * stock variants proposed for the per-node objcg regression.
 *
 * Context: the caller owns @ctx (its CPU, interrupts off).
 */
#include <objcg_shadow/acct.h>
#include "acct_internal.h"

static bool osh_slot_matches(const struct osh_design *design,
			     const struct osh_stock_slot *slot,
			     const struct osh_objcg *objcg)
{
	if (slot->objcg == objcg)
		return true;
	return design->stock_by_memcg && slot->objcg &&
	       READ_ONCE(slot->objcg->memcg) == READ_ONCE(objcg->memcg);
}

static struct osh_stock_slot *osh_stock_find(struct osh_acct *acct,
					     unsigned int d,
					     struct osh_stock *stock,
					     const struct osh_objcg *objcg)
{
	const struct osh_design *design = &acct->designs[d];
	unsigned int i;

	/* the first slot the loop would pick, and all a one-slot stock has */
	if (likely(stock->slot[0].objcg == objcg)) {
		i = 0;
		goto found;
	}
	for (i = 0; i < design->stock_slots; i++) {
		if (osh_slot_matches(design, &stock->slot[i], objcg))
			goto found;
	}
	return NULL;
found:
	/* only a stock with a choice of victims needs the recency */
	if (design->stock_slots > 1)
		stock->slot[i].last_use = ++stock->clock;
	return &stock->slot[i];
}

/*
 * Where a drained slot's sub-page remainder lives: the objcg, as in 6.1,
 * or, for slots shared by every objcg of a memcg, the memcg itself (moved
 * to the parent on offline).
 */
static atomic_t *osh_remainder(struct osh_acct *acct, unsigned int d,
			       struct osh_objcg *objcg)
{
	if (acct->designs[d].stock_by_memcg)
		return &osh_objcg_mdesign(objcg)->charged_bytes;
	return &objcg->nr_charged_bytes;
}

/* mod_objcg_mlstate(): flushed vmstat goes to the objcg's current memcg. */
static void osh_vmstat_flush(struct osh_acct *acct, unsigned int d,
			     struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			     int node, int type, int nr)
{
	struct osh_mdesign *md = osh_objcg_mdesign(objcg);

	if (node < 0 || node >= (int)acct->nr_nodes)
		node = 0;
	atomic_long_add(nr, &md->vmstat[node * OSH_NR_SLAB_TYPES + type]);
	ctx->cnt[d].vmstat_flushes++;
}

static void osh_slot_flush_vmstat(struct osh_acct *acct, unsigned int d,
				  struct osh_cpu_ctx *ctx,
				  struct osh_stock_slot *slot)
{
	int type;

	for (type = 0; type < OSH_NR_SLAB_TYPES; type++) {
		if (slot->nr_slab_b[type]) {
			osh_vmstat_flush(acct, d, ctx, slot->objcg, slot->node,
					 type, slot->nr_slab_b[type]);
			slot->nr_slab_b[type] = 0;
		}
	}
}

/*
 * drain_obj_stock(): whole pages are uncharged, the sub-page remainder
 * goes to objcg->nr_charged_bytes, pending vmstat is flushed, and the
 * slot's objcg reference is dropped.
 */
static void osh_slot_drain(struct osh_acct *acct, unsigned int d,
			   struct osh_cpu_ctx *ctx, struct osh_stock_slot *slot)
{
	struct osh_objcg *old = slot->objcg;

	if (!old)
		return;
	if (slot->nr_bytes) {
		unsigned int nr_pages = slot->nr_bytes >> PAGE_SHIFT;
		unsigned int nr_bytes = slot->nr_bytes & (PAGE_SIZE - 1);

		if (nr_pages)
			osh_uncharge_pages(acct, d, ctx, old, nr_pages);
		atomic_add(nr_bytes, osh_remainder(acct, d, old));
		slot->nr_bytes = 0;
	}
	osh_slot_flush_vmstat(acct, d, ctx, slot);
	slot->node = -1;
	slot->objcg = NULL;
	osh_objcg_put(old);
}

/* The slot to (re)use for @objcg: an empty one, else the least recent. */
static struct osh_stock_slot *osh_stock_victim(struct osh_acct *acct,
					       unsigned int d,
					       struct osh_stock *stock)
{
	struct osh_stock_slot *victim = &stock->slot[0];
	unsigned int i;

	for (i = 0; i < acct->designs[d].stock_slots; i++) {
		struct osh_stock_slot *slot = &stock->slot[i];

		if (!slot->objcg)
			return slot;
		if (slot->last_use < victim->last_use)
			victim = slot;
	}
	return victim;
}

/* The "reset if necessary" branch of refill_obj_stock()/mod_objcg_state(). */
static struct osh_stock_slot *osh_stock_take(struct osh_acct *acct,
					     unsigned int d,
					     struct osh_cpu_ctx *ctx,
					     struct osh_objcg *objcg)
{
	struct osh_stock *stock = &ctx->stock[d];
	struct osh_stock_slot *slot = osh_stock_victim(acct, d, stock);
	atomic_t *remainder;

	ctx->cnt[d].stock_takes++;
	if (slot->objcg) {
		ctx->cnt[d].drain_objcg++;
		osh_slot_drain(acct, d, ctx, slot);
	}
	osh_objcg_get(objcg);
	slot->objcg = objcg;
	remainder = osh_remainder(acct, d, objcg);
	slot->nr_bytes = atomic_read(remainder) ? atomic_xchg(remainder, 0) : 0;
	slot->node = -1;
	slot->last_use = ++stock->clock;
	return slot;
}

/* refill_obj_stock() */
static void osh_stock_refill(struct osh_acct *acct, unsigned int d,
			     struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			     unsigned int nr_bytes, bool allow_uncharge)
{
	struct osh_stock_slot *slot;
	unsigned int nr_pages = 0;

	slot = osh_stock_find(acct, d, &ctx->stock[d], objcg);
	if (!slot) {
		slot = osh_stock_take(acct, d, ctx, objcg);
		allow_uncharge = true;	/* as the kernel: objcg changed */
	}
	slot->nr_bytes += nr_bytes;
	if (allow_uncharge && slot->nr_bytes > PAGE_SIZE) {
		nr_pages = slot->nr_bytes >> PAGE_SHIFT;
		slot->nr_bytes &= PAGE_SIZE - 1;
	}
	if (nr_pages)
		osh_uncharge_pages(acct, d, ctx, slot->objcg, nr_pages);
}

/**
 * osh_stock_charge() - obj_cgroup_charge(): charge @size bytes to @objcg
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context
 * @objcg: objcg to charge
 * @size: bytes
 */
void osh_stock_charge(struct osh_acct *acct, unsigned int d,
		      struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
		      unsigned int size)
{
	struct osh_stock_slot *slot;
	unsigned int nr_pages, nr_bytes;

	if (acct->designs[d].stock_kind == OSH_STOCK_ROUND_ROBIN) {
		osh_stock_rr_charge(acct, d, ctx, objcg, size);
		return;
	}
	/* consume_obj_stock() */
	slot = osh_stock_find(acct, d, &ctx->stock[d], objcg);
	if (slot && slot->nr_bytes >= size) {
		slot->nr_bytes -= size;
		ctx->cnt[d].stock_hits++;
		return;
	}
	ctx->cnt[d].stock_misses++;
	nr_pages = size >> PAGE_SHIFT;
	nr_bytes = size & (PAGE_SIZE - 1);
	if (nr_bytes)
		nr_pages++;
	osh_charge_pages(acct, d, ctx, objcg, nr_pages);
	if (nr_bytes)
		osh_stock_refill(acct, d, ctx, objcg, PAGE_SIZE - nr_bytes,
				 false);
}

/**
 * osh_stock_uncharge() - obj_cgroup_uncharge(): return @size bytes
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context
 * @objcg: objcg the bytes were charged to
 * @size: bytes
 */
void osh_stock_uncharge(struct osh_acct *acct, unsigned int d,
			struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			unsigned int size)
{
	if (acct->designs[d].stock_kind == OSH_STOCK_ROUND_ROBIN)
		osh_stock_rr_uncharge(acct, d, ctx, objcg, size);
	else
		osh_stock_refill(acct, d, ctx, objcg, size, true);
}

/**
 * osh_stock_mod_state() - mod_objcg_state(): batch slab vmstat per node
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context
 * @objcg: objcg of the object
 * @node: node of the object's page (the kernel's pgdat)
 * @type: reclaimable or unreclaimable
 * @nr: bytes, negative on free
 */
void osh_stock_mod_state(struct osh_acct *acct, unsigned int d,
			 struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			 int node, enum osh_slab_type type, int nr)
{
	struct osh_stock_slot *slot;
	int *bytes;

	if (acct->designs[d].stock_kind == OSH_STOCK_ROUND_ROBIN) {
		osh_stock_rr_mod_state(acct, d, ctx, objcg, node, type, nr);
		return;
	}
	slot = osh_stock_find(acct, d, &ctx->stock[d], objcg);
	if (!slot) {
		slot = osh_stock_take(acct, d, ctx, objcg);
		slot->node = node;
	} else if (slot->node != node) {
		if (slot->nr_slab_b[0] || slot->nr_slab_b[1])
			ctx->cnt[d].drain_node++;
		osh_slot_flush_vmstat(acct, d, ctx, slot);
		slot->node = node;
	}
	bytes = &slot->nr_slab_b[type];
	/* even a large object is cached once before being pushed out */
	if (!*bytes) {
		*bytes = nr;
		nr = 0;
	} else {
		*bytes += nr;
		if (abs(*bytes) > (int)PAGE_SIZE) {
			nr = *bytes;
			*bytes = 0;
		} else {
			nr = 0;
		}
	}
	if (nr)
		osh_vmstat_flush(acct, d, ctx, slot->objcg, node, type, nr);
}

/**
 * osh_stock_drain_all_slots() - drain every slot of one design on a CPU
 * @acct: accounting state
 * @d: design index
 * @ctx: the CPU's context
 */
void osh_stock_drain_all_slots(struct osh_acct *acct, unsigned int d,
			       struct osh_cpu_ctx *ctx)
{
	unsigned int i;

	if (acct->designs[d].stock_kind == OSH_STOCK_ROUND_ROBIN) {
		osh_stock_rr_drain_all(acct, d, ctx);
		return;
	}
	for (i = 0; i < OSH_STOCK_MAX_SLOTS; i++) {
		if (ctx->stock[d].slot[i].objcg) {
			ctx->cnt[d].drain_explicit++;
			osh_slot_drain(acct, d, ctx, &ctx->stock[d].slot[i]);
		}
	}
}
