/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Functions shared by the files of module/core/ only.
 */
#ifndef OBJCG_SHADOW_ACCT_INTERNAL_H
#define OBJCG_SHADOW_ACCT_INTERNAL_H

#include <objcg_shadow/acct.h>

/* The design state of the memcg @objcg currently charges. */
static inline struct osh_mdesign *osh_objcg_mdesign(struct osh_objcg *objcg)
{
	return READ_ONCE(objcg->memcg)->design[objcg->design];
}

struct osh_objcg *osh_objcg_walk(struct osh_acct *acct, unsigned int d,
				 struct osh_memcg *memcg, int node);
void osh_charge_pages(struct osh_acct *acct, unsigned int d,
		      struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
		      unsigned int nr_pages);
void osh_uncharge_pages(struct osh_acct *acct, unsigned int d,
			struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			unsigned int nr_pages);

void osh_stock_charge(struct osh_acct *acct, unsigned int d,
		      struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
		      unsigned int size);
void osh_stock_uncharge(struct osh_acct *acct, unsigned int d,
			struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			unsigned int size);
void osh_stock_mod_state(struct osh_acct *acct, unsigned int d,
			 struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			 int node, enum osh_slab_type type, int nr);
void osh_stock_drain_all_slots(struct osh_acct *acct, unsigned int d,
			       struct osh_cpu_ctx *ctx);

void osh_stock_rr_charge(struct osh_acct *acct, unsigned int d,
			 struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			 unsigned int size);
void osh_stock_rr_uncharge(struct osh_acct *acct, unsigned int d,
			   struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			   unsigned int size);
void osh_stock_rr_mod_state(struct osh_acct *acct, unsigned int d,
			    struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			    int node, enum osh_slab_type type, int nr);
void osh_stock_rr_drain_all(struct osh_acct *acct, unsigned int d,
			    struct osh_cpu_ctx *ctx);

#endif /* OBJCG_SHADOW_ACCT_INTERNAL_H */
