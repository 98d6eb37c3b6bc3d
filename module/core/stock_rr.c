// SPDX-License-Identifier: GPL-2.0
/*
 * The 7.3 obj stock (OSH_STOCK_ROUND_ROBIN), step for step as in 7.3's
 * __consume_obj_stock(), __refill_obj_stock(), __account_obj_stock(),
 * drain_obj_stock_slot() and __memcg_slab_post_alloc_hook(): slots keyed
 * by objcg, the matching one else the first empty one else a round-robin
 * victim; a new slot starts from the objcg's nr_charged_bytes; byte
 * counts are u16; one slab vmstat batch per CPU, owned by one (slot,
 * node) at a time.  When the kernel's trylock of the stock fails (an
 * interrupt on a CPU whose stock is held) every operation writes through.
 *
 * Context: the caller owns @ctx (its CPU, interrupts off).
 */
#include <objcg_shadow/acct.h>
#include "acct_internal.h"

#define OSH_RR_BYTES_MAX	U16_MAX
#define OSH_RR_STAT_MAX		S16_MAX

/*
 * What a seeded slot holds when the kernel's slot held an objcg the shadow
 * cannot name (of a memcg dead before load, say): it matches no charge and
 * its eviction moves no bytes, as the kernel's does for the shadow.
 */
static struct osh_objcg osh_rr_foreign;

static int osh_rr_find(struct osh_acct *acct, unsigned int d,
		       const struct osh_stock *stock,
		       const struct osh_objcg *objcg)
{
	unsigned int i;

	for (i = 0; i < acct->designs[d].stock_slots; i++)
		if (stock->slot[i].objcg == objcg)
			return i;
	return -1;
}

static int osh_rr_node(const struct osh_acct *acct, int node)
{
	return node < 0 || node >= (int)acct->nr_nodes ? 0 : node;
}

/* mod_objcg_mlstate(): to the objcg's current memcg, on @node */
static void osh_rr_vmstat(struct osh_acct *acct, unsigned int d,
			  struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			  int node, int type, int nr)
{
	struct osh_mdesign *md = osh_objcg_mdesign(objcg);

	node = osh_rr_node(acct, node);
	atomic_long_add(nr, &md->vmstat[node * OSH_NR_SLAB_TYPES + type]);
	ctx->cnt[d].vmstat_flushes++;
}

/* drain_obj_stock_stats() */
static void osh_rr_flush_stats(struct osh_acct *acct, unsigned int d,
			       struct osh_cpu_ctx *ctx, struct osh_stock *stock)
{
	int type;

	if (stock->stat_slot < 0)
		return;
	for (type = 0; type < OSH_NR_SLAB_TYPES; type++) {
		if (stock->stat_b[type])
			osh_rr_vmstat(acct, d, ctx,
				      stock->slot[stock->stat_slot].objcg,
				      stock->stat_node, type,
				      stock->stat_b[type]);
		stock->stat_b[type] = 0;
	}
	stock->stat_slot = -1;
	stock->stat_node = -1;
}

/* drain_obj_stock_slot() */
static void osh_rr_drain_slot(struct osh_acct *acct, unsigned int d,
			      struct osh_cpu_ctx *ctx, struct osh_stock *stock,
			      int i)
{
	struct osh_stock_slot *slot = &stock->slot[i];
	struct osh_objcg *old = slot->objcg;

	if (!old)
		return;
	if (old == &osh_rr_foreign) {
		slot->objcg = NULL;
		return;
	}
	if (slot->nr_bytes) {
		unsigned int nr_pages = slot->nr_bytes >> PAGE_SHIFT;

		if (nr_pages)
			osh_uncharge_pages(acct, d, ctx, old, nr_pages);
		atomic_add(slot->nr_bytes & (PAGE_SIZE - 1),
			   &old->nr_charged_bytes);
		slot->nr_bytes = 0;
	}
	if (stock->stat_slot == i)
		osh_rr_flush_stats(acct, d, ctx, stock);
	slot->objcg = NULL;
	osh_objcg_put(old);
}

/* __refill_obj_stock() */
static void osh_rr_refill(struct osh_acct *acct, unsigned int d,
			  struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			  unsigned int nr_bytes, bool allow_uncharge)
{
	struct osh_stock *stock = &ctx->stock[d];
	unsigned int i, nr_pages = 0, bytes;
	int slot = -1, empty = -1;

	if (ctx->kernel_stock_busy) {
		ctx->cnt[d].stock_busy++;
		nr_pages = nr_bytes >> PAGE_SHIFT;
		atomic_add(nr_bytes & (PAGE_SIZE - 1), &objcg->nr_charged_bytes);
		goto out;
	}
	for (i = 0; i < acct->designs[d].stock_slots; i++) {
		if (!stock->slot[i].objcg) {
			if (empty < 0)
				empty = i;
			continue;
		}
		if (stock->slot[i].objcg == objcg) {
			slot = i;
			break;
		}
	}
	if (slot < 0) {
		slot = empty;
		if (slot < 0) {
			slot = stock->drain_idx++;
			if (stock->drain_idx == acct->designs[d].stock_slots)
				stock->drain_idx = 0;
			ctx->cnt[d].drain_objcg++;
			osh_rr_drain_slot(acct, d, ctx, stock, slot);
		}
		ctx->cnt[d].stock_takes++;
		osh_objcg_get(objcg);
		bytes = atomic_read(&objcg->nr_charged_bytes) ?
			atomic_xchg(&objcg->nr_charged_bytes, 0) : 0;
		stock->slot[slot].objcg = objcg;
		allow_uncharge = true;
	} else {
		bytes = stock->slot[slot].nr_bytes;
	}
	bytes += nr_bytes;
	if ((allow_uncharge && bytes > PAGE_SIZE) || bytes > OSH_RR_BYTES_MAX) {
		nr_pages = bytes >> PAGE_SHIFT;
		bytes &= PAGE_SIZE - 1;
	}
	stock->slot[slot].nr_bytes = bytes;
out:
	if (nr_pages)
		osh_uncharge_pages(acct, d, ctx, objcg, nr_pages);
}

/**
 * osh_stock_rr_charge() - the charge step of the 7.3 post-alloc hook
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context
 * @objcg: objcg to charge
 * @size: bytes
 */
void osh_stock_rr_charge(struct osh_acct *acct, unsigned int d,
			 struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			 unsigned int size)
{
	struct osh_stock *stock = &ctx->stock[d];
	int i = ctx->kernel_stock_busy ? -1 :
		osh_rr_find(acct, d, stock, objcg);
	unsigned int charge;

	if (i >= 0 && stock->slot[i].nr_bytes >= size) {
		stock->slot[i].nr_bytes -= size;
		ctx->cnt[d].stock_hits++;
		return;
	}
	ctx->cnt[d].stock_misses++;
	charge = ALIGN(size, PAGE_SIZE);
	osh_charge_pages(acct, d, ctx, objcg, charge >> PAGE_SHIFT);
	if (charge - size)
		osh_rr_refill(acct, d, ctx, objcg, charge - size, false);
}

/**
 * osh_stock_rr_uncharge() - refill_obj_stock(objcg, size, true)
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context
 * @objcg: objcg the bytes were charged to
 * @size: bytes
 */
void osh_stock_rr_uncharge(struct osh_acct *acct, unsigned int d,
			   struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			   unsigned int size)
{
	osh_rr_refill(acct, d, ctx, objcg, size, true);
}

/**
 * osh_stock_rr_mod_state() - __account_obj_stock(): batch slab vmstat
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context
 * @objcg: objcg of the object
 * @node: node of the object's slab
 * @type: reclaimable or unreclaimable
 * @nr: bytes, negative on free
 */
void osh_stock_rr_mod_state(struct osh_acct *acct, unsigned int d,
			    struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			    int node, enum osh_slab_type type, int nr)
{
	struct osh_stock *stock = &ctx->stock[d];
	int i = ctx->kernel_stock_busy ? -1 :
		osh_rr_find(acct, d, stock, objcg);
	int *bytes;

	node = osh_rr_node(acct, node);
	if (i < 0)
		goto direct;
	if (stock->stat_slot < 0) {
		stock->stat_slot = i;
		stock->stat_node = node;
	} else if (stock->stat_slot != i || stock->stat_node != node) {
		if (stock->stat_b[0] || stock->stat_b[1])
			ctx->cnt[d].drain_node++;
		osh_rr_flush_stats(acct, d, ctx, stock);
		stock->stat_slot = i;
		stock->stat_node = node;
	}
	bytes = &stock->stat_b[type];
	nr += *bytes;
	if (abs(nr) <= OSH_RR_STAT_MAX && (!*bytes || abs(nr) <= (int)PAGE_SIZE)) {
		*bytes = nr;
		nr = 0;
	} else {
		*bytes = 0;
	}
direct:
	if (nr)
		osh_rr_vmstat(acct, d, ctx, objcg, node, type, nr);
}

/**
 * osh_stock_rr_drain_all() - drain_obj_stock(): every slot of one CPU
 * @acct: accounting state
 * @d: design index
 * @ctx: the CPU's context
 */
void osh_stock_rr_drain_all(struct osh_acct *acct, unsigned int d,
			    struct osh_cpu_ctx *ctx)
{
	struct osh_stock *stock = &ctx->stock[d];
	unsigned int i;

	for (i = 0; i < OSH_STOCK_MAX_SLOTS; i++) {
		if (stock->slot[i].objcg) {
			ctx->cnt[d].drain_explicit++;
			osh_rr_drain_slot(acct, d, ctx, stock, i);
		}
	}
}

/**
 * osh_acct_seed_stock() - start a CPU's stock where the kernel's stands
 * @acct: accounting state
 * @d: design index: a round-robin stock of as many slots as the kernel's
 * @ctx: this CPU's context, whose stock of @d is still empty
 * @victim: the kernel's next round-robin victim
 * @held: per kernel slot: NULL if empty, else the shadow's objcg for it
 *	(a reference, handed over) or ERR_PTR(-ENOENT) if it has none
 * @nr: number of kernel slots
 *
 * The kernel's stock holds objcgs from before load; a shadow that starts
 * empty takes free slots where the kernel evicts, and from then on evicts
 * on other turns than the kernel for as long as the workload cycles more
 * objcgs than there are slots.  Slots start empty of bytes: those were
 * charged before load.
 *
 * Return: true if seeded; on false the caller still owns the references.
 */
bool osh_acct_seed_stock(struct osh_acct *acct, unsigned int d,
			 struct osh_cpu_ctx *ctx, unsigned int victim,
			 struct osh_objcg *const *held, unsigned int nr)
{
	struct osh_stock *stock = &ctx->stock[d];
	unsigned int i;

	if (d >= acct->nr_designs ||
	    acct->designs[d].stock_kind != OSH_STOCK_ROUND_ROBIN ||
	    acct->designs[d].stock_slots != nr || victim >= nr)
		return false;
	for (i = 0; i < nr; i++)
		if (stock->slot[i].objcg)
			return false;
	for (i = 0; i < nr; i++) {
		if (IS_ERR(held[i])) {
			stock->slot[i].objcg = &osh_rr_foreign;
			ctx->cnt[d].seeded_foreign++;
		} else if (held[i]) {
			stock->slot[i].objcg = held[i];
			ctx->cnt[d].seeded_slots++;
		}
	}
	stock->drain_idx = victim;
	return true;
}
