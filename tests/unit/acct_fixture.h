/* SPDX-License-Identifier: GPL-2.0 */
/* A tree + accounting engine + simulated CPUs, for the accounting tests. */
#ifndef OSH_ACCT_FIXTURE_H
#define OSH_ACCT_FIXTURE_H

#include "osh_test.h"
#include <objcg_shadow/acct.h>
#include <objcg_shadow/memcg_tree.h>
#include <objcg_shadow/outbuf.h>

#define FX_CPUS		4
#define FX_NODES	2

struct fixture {
	struct osh_memcg_tree tree;
	struct osh_acct acct;
	struct osh_cpu_ctx cpu[FX_CPUS];
};

extern struct fixture fx;

void fx_setup(const char *designs);
void fx_teardown(void);
struct osh_memcg *fx_memcg(u64 id, u64 parent_id, int level);
void fx_offline(u64 id);
void fx_free(u64 id);
struct osh_cpu_ctx *fx_cpu(int cpu);
int fx_alloc(int cpu, u64 memcg_id, unsigned long ptr, unsigned int size,
	     int node, enum osh_slab_type type);
bool fx_free_obj(int cpu, unsigned long ptr);
void fx_drain_all(void);
long fx_stat(u64 memcg_id, unsigned int d, const char *key);
typedef void (*fx_dump_fn)(struct osh_acct *acct, struct osh_memcg_tree *tree,
			   unsigned int d, struct osh_buf *ob);
char *fx_dump_of(fx_dump_fn dump, unsigned int d);
char *fx_dump(unsigned int d);

#endif
