// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests of the shadow accounting (module/core/acct.c, stock.c,
 * objmap.c, designs.c): the 6.1 stock algorithm, reparenting, page
 * charges, and randomized conservation invariants.
 */
#include "acct_fixture.h"

#define PG	4096L

static void test_stock_consume_refill_61(void)
{
	struct osh_dcounters c;
	unsigned long p;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	for (p = 1; p <= 41; p++)
		CHECK_EQ(fx_alloc(0, 10, p * 64, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	/* first charge takes a page, 39 fit in its 3996 bytes, 41st misses */
	CHECK_EQ(c.stock_misses, 2);
	CHECK_EQ(c.stock_hits, 39);
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 2);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), 2 * PG - 41 * 100);
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"), 4100);
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable.N0"), 4100);
	CHECK_EQ(fx_stat(10, 0, "objects"), 41);
	for (p = 1; p <= 41; p++)
		CHECK(fx_free_obj(0, p * 64));
	/* refill with uncharge allowed: one page returns past PAGE_SIZE */
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 1);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), PG);
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"), 0);
	fx_drain_all();
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 0);
	CHECK_EQ(fx_stat(10, 0, "charged_bytes"), 0);
	CHECK(!fx_free_obj(0, 64));
	fx_teardown();
}

static void test_stock_drains_on_objcg_switch(void)
{
	struct osh_dcounters c;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	fx_memcg(11, 1, 1);
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 11, 0x2000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	/* 10's 3996 bytes left the stock for its objcg's nr_charged_bytes */
	CHECK_EQ(fx_stat(10, 0, "charged_bytes"), PG - 100);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), 0);
	/* 10 again: refill takes the remainder back from the objcg */
	CHECK_EQ(fx_alloc(0, 10, 0x3000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "charged_bytes"), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.drain_objcg, 2);
	/*
	 * The third alloc missed (11 was cached) and charged a page; the
	 * refill took 10's 3996 back, crossed a page and uncharged one.
	 */
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 1);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), 2 * (PG - 100) & (PG - 1));
	CHECK(fx_free_obj(1, 0x1000));
	CHECK(fx_free_obj(1, 0x2000));
	CHECK(fx_free_obj(1, 0x3000));
	fx_teardown();
}

static void test_vmstat_batched_per_node(void)
{
	struct osh_dcounters c;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	/* first value is only cached, the second flushes past PAGE_SIZE */
	CHECK_EQ(fx_alloc(0, 10, 0x10, 3000, 0, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "vmstat_slab_reclaimable"), 0);
	CHECK_EQ(fx_alloc(0, 10, 0x20, 3000, 0, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "vmstat_slab_reclaimable"), 6000);
	/* a node change flushes what was cached for the old node */
	CHECK_EQ(fx_alloc(0, 10, 0x30, 200, 0, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 10, 0x40, 200, 1, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "vmstat_slab_reclaimable"), 6200);
	CHECK_EQ(fx_stat(10, 0, "slab_reclaimable.N1"), 200);
	CHECK_EQ(fx_stat(10, 0, "slab_reclaimable.N0"), 6200);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.drain_node, 1);
	fx_teardown();
}

static void test_reparent_then_free(void)
{
	struct osh_memcg *child;
	long released_before;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	child = fx_memcg(11, 10, 2);
	CHECK_EQ(fx_alloc(0, 11, 0x100, 500, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 11, 0x200, 500, 1, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_stat(11, 0, "objects"), 2);
	fx_offline(11);
	/* the child's objcg now charges the parent: nothing re-pointed */
	CHECK_EQ(fx_stat(11, 0, "objects"), 0);
	CHECK_EQ(fx_stat(11, 0, "objcgs"), 0);
	CHECK_EQ(fx_stat(10, 0, "objects"), 2);
	CHECK_EQ(fx_stat(10, 0, "inherited"), 1);
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"), 1000);
	CHECK_EQ(atomic_long_read(&fx.acct.objcgs_swapped[0]), 1);
	CHECK_EQ(atomic_long_read(&fx.acct.objects_repointed[0]), 2);
	/* new allocations of a task still in the dead memcg go to the parent */
	CHECK_EQ(fx_alloc(1, 11, 0x300, 500, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "objects"), 3);
	/* only the tree's reference is left on the dead child */
	CHECK_EQ(refcount_read(&child->ref), 1);
	fx_free(11);
	released_before = atomic_long_read(&fx.acct.events[OSH_EV_OBJCG_RELEASED]);
	CHECK(fx_free_obj(1, 0x100));
	CHECK(fx_free_obj(0, 0x200));
	CHECK(fx_free_obj(0, 0x300));
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"), 0);
	fx_drain_all();
	/* last object and stock gone: the inherited objcg is released */
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJCG_RELEASED]),
		 released_before + 1);
	CHECK_EQ(fx_stat(10, 0, "inherited"), 0);
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 0);
	fx_teardown();
}

static void test_hierarchy_fold_on_free(void)
{
	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	fx_memcg(11, 10, 2);
	CHECK_EQ(fx_alloc(0, 11, 0x100, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	fx_offline(11);
	CHECK(fx_free_obj(0, 0x100));
	fx_drain_all();
	/* the child charged a page, the parent uncharged it: locals differ */
	CHECK_EQ(fx_stat(11, 0, "kmem_pages"), 1);
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), -1);
	fx_free(11);
	/* after the kernel frees the child its local is folded upwards */
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 0);
	fx_teardown();
}

static void test_root_is_never_charged(void)
{
	struct osh_dcounters c;

	fx_setup("v6.1");
	CHECK_EQ(fx_alloc(0, 1, 0x100, 100, 0, OSH_SLAB_UNRECLAIMABLE), -ENOENT);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.root_bypass, 1);
	CHECK_EQ(atomic_long_read(&fx.acct.objmap.nr), 0);
	fx_teardown();
}

static void test_map_full_and_stale(void)
{
	unsigned long p;
	int full = 0;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	/* 1024 buckets of 8: far more objects than fit */
	for (p = 1; p <= 20000; p++)
		full += fx_alloc(0, 10, p * 8, 64, 0, OSH_SLAB_UNRECLAIMABLE) == -ENOSPC;
	CHECK(full > 0);
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJ_MAP_FULL]), full);
	CHECK_EQ(fx_stat(10, 0, "objects"), 20000 - full);
	CHECK_EQ(fx_stat(10, 0, "objects"), atomic_long_read(&fx.acct.objmap.nr));
	for (p = 1; p <= 20000; p++)
		fx_free_obj(0, p * 8);
	CHECK_EQ(fx_stat(10, 0, "objects"), 0);
	/* an address allocated twice: the first free was never seen */
	CHECK_EQ(fx_alloc(0, 10, 0x5000, 64, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 10, 0x5000, 128, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJ_STALE]), 1);
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"), 128);
	CHECK(fx_free_obj(0, 0x5000));
	fx_teardown();
}

/* A free can skip the map only while no entry lacks the kernel's charge. */
static void test_kernel_uncharged_objects_are_counted(void)
{
	struct osh_memcg *m;

	fx_setup("v6.1");
	m = fx_memcg(10, 1, 1);
	CHECK(osh_acct_kernel_charged_all(&fx.acct));
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 64, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK(osh_acct_kernel_charged_all(&fx.acct));
	CHECK_EQ(osh_acct_slab_alloc(&fx.acct, fx_cpu(0), m, NULL, 0x2000, 64, 0,
				     OSH_SLAB_UNRECLAIMABLE,
				     OSH_OBJINFO_KERNEL_UNCHARGED), 0);
	CHECK_EQ(osh_acct_slab_alloc(&fx.acct, fx_cpu(0), m, NULL, 0x3000, 64, 0,
				     OSH_SLAB_UNRECLAIMABLE,
				     OSH_OBJINFO_KERNEL_UNCHARGED), 0);
	CHECK_EQ(atomic_long_read(&fx.acct.nr_kernel_uncharged), 2);
	CHECK(!osh_acct_kernel_charged_all(&fx.acct));
	CHECK(fx_free_obj(0, 0x1000));
	CHECK_EQ(atomic_long_read(&fx.acct.nr_kernel_uncharged), 2);
	CHECK(fx_free_obj(0, 0x2000));
	CHECK_EQ(atomic_long_read(&fx.acct.nr_kernel_uncharged), 1);
	/* a missed free: the stale entry's count goes with its uncharge */
	CHECK_EQ(fx_alloc(0, 10, 0x3000, 64, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJ_STALE]), 1);
	CHECK(osh_acct_kernel_charged_all(&fx.acct));
	CHECK_EQ(fx_stat(10, 0, "objects"), 1);
	/* a root object is charged by no design, so nothing is counted */
	CHECK_EQ(osh_acct_slab_alloc(&fx.acct, fx_cpu(0), osh_memcg_lookup(&fx.tree, 1),
				     NULL, 0x4000, 64, 0, OSH_SLAB_UNRECLAIMABLE,
				     OSH_OBJINFO_KERNEL_UNCHARGED), -ENOENT);
	CHECK(osh_acct_kernel_charged_all(&fx.acct));
	CHECK(fx_free_obj(0, 0x3000));
	fx_teardown();
}

static void test_pages_and_stacks(void)
{
	struct osh_memcg *m;

	fx_setup("v6.1");
	m = fx_memcg(10, 1, 1);
	CHECK_EQ(osh_acct_page_alloc(&fx.acct, fx_cpu(0), m, NULL, 0xa000, 4, 1), 0);
	CHECK_EQ(osh_acct_page_alloc(&fx.acct, fx_cpu(0), m, NULL, 0xb000, 1, 0), 0);
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 5);
	CHECK(osh_acct_mark_page(&fx.acct, 0xa000, OSH_OBJINFO_STACK));
	CHECK(!osh_acct_mark_page(&fx.acct, 0xa000, OSH_OBJINFO_STACK));
	CHECK(!osh_acct_mark_page(&fx.acct, 0xc000, OSH_OBJINFO_STACK));
	CHECK(osh_acct_mark_page(&fx.acct, 0xb000, OSH_OBJINFO_LARGE_KMALLOC));
	/* large kmalloc pages are slab, unbatched, in the kernel's vmstat */
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"), PG);
	CHECK_EQ(fx_stat(10, 0, "vmstat_slab_unreclaimable"), PG);
	CHECK_EQ(fx_stat(10, 0, "kernel_stack"), 4 * PG);
	CHECK_EQ(fx_stat(10, 0, "kernel_stack.N1"), 4 * PG);
	CHECK(osh_acct_page_free(&fx.acct, fx_cpu(1), 0xa000));
	CHECK(!osh_acct_page_free(&fx.acct, fx_cpu(1), 0xa000));
	CHECK_EQ(fx_stat(10, 0, "kernel_stack"), 0);
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 1);
	CHECK(osh_acct_page_free(&fx.acct, fx_cpu(1), 0xb000));
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 0);
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"), 0);
	CHECK_EQ(fx_stat(10, 0, "vmstat_slab_unreclaimable"), 0);
	fx_teardown();
}

static void test_design_parse(void)
{
	struct osh_design d[OSH_MAX_DESIGNS];
	char err[512];

	CHECK_EQ(osh_design_parse(d, OSH_MAX_DESIGNS, "v6.1,v6.7,v7.1,pernode",
				  err, sizeof(err)), 4);
	CHECK(!d[0].per_node_objcg && d[0].task_cache == OSH_TASK_CACHE_NONE);
	CHECK(d[2].per_node_objcg && d[2].task_cache == OSH_TASK_CACHE_SINGLE);
	CHECK(d[3].task_cache == OSH_TASK_CACHE_PERNODE);
	CHECK_EQ(osh_design_parse(d, OSH_MAX_DESIGNS, "v7.1+stock4+memcgkey\n",
				  err, sizeof(err)), 1);
	CHECK(!strcmp(d[0].name, "v7.1+stock4+memcgkey"));
	CHECK(d[0].stock_slots == 4 && d[0].stock_by_memcg);
	CHECK_EQ(osh_design_parse(d, OSH_MAX_DESIGNS, "v6.2", err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "unknown design 'v6.2'") && strstr(err, "pernode"));
	CHECK_EQ(osh_design_parse(d, OSH_MAX_DESIGNS, "v7.1+stock9", err,
				  sizeof(err)), -EINVAL);
	CHECK_EQ(osh_design_parse(d, OSH_MAX_DESIGNS, "v7.1+stock0", err,
				  sizeof(err)), -EINVAL);
	CHECK_EQ(osh_design_parse(d, OSH_MAX_DESIGNS, "v6.1,v6.1", err,
				  sizeof(err)), -EINVAL);
	CHECK(strstr(err, "twice"));
	CHECK_EQ(osh_design_parse(d, OSH_MAX_DESIGNS, "v6.1,,v6.7", err,
				  sizeof(err)), -EINVAL);
	CHECK_EQ(osh_design_parse(d, OSH_MAX_DESIGNS, "", err, sizeof(err)),
		 -EINVAL);
	CHECK_EQ(osh_design_parse(d, 2, "v6.1,v6.7,v7.1", err, sizeof(err)),
		 -EINVAL);
}

static void test_multislot_and_memcgkey_stocks(void)
{
	struct osh_dcounters c1, c4, ck;
	int i;

	/* two memcgs alternating on one CPU: 1 slot drains, 4 slots don't */
	fx_setup("v6.1,v6.1+stock4,v7.1+memcgkey");
	fx_memcg(10, 1, 1);
	fx_memcg(11, 1, 1);
	for (i = 0; i < 100; i++)
		CHECK_EQ(fx_alloc(0, i % 2 ? 10 : 11, 0x100 + i * 8, 64,
				  i % 2, OSH_SLAB_UNRECLAIMABLE), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c1);
	osh_acct_sum_counters(&fx.acct, 1, &c4);
	osh_acct_sum_counters(&fx.acct, 2, &ck);
	CHECK_EQ(c1.drain_objcg, 99);
	CHECK_EQ(c4.drain_objcg, 0);
	CHECK_EQ(ck.drain_objcg, 99);
	/* all designs charge the same bytes */
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"),
		 fx_stat(10, 1, "slab_unreclaimable"));
	CHECK_EQ(fx_stat(10, 2, "slab_unreclaimable"), 50 * 64);
	for (i = 0; i < 100; i++)
		CHECK(fx_free_obj(1, 0x100 + i * 8));
	fx_teardown();
}

/* --- randomized conservation ------------------------------------------------ */

static unsigned long rng = 88172645463325252UL;

static unsigned long rnd(unsigned long n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

struct live {
	unsigned long ptr;
	unsigned int size;
};

/* Per design: pages * PAGE_SIZE == live + stock + remainder bytes, and
 * flushed vmstat + stock-pending vmstat == exact slab bytes.
 */
static void check_conservation(unsigned int d, long live_bytes)
{
	char *text = fx_dump(d);
	long pages = 0, stock = 0, charged = 0, slab = 0, vm = 0, pend = 0;
	const char *line;
	int cpu, i;

	for (line = text; *line; line = strchr(line, '\n') + 1) {
		const char *v;

		v = strstr(line, " kmem_pages=");
		pages += strtol(v + 12, NULL, 10);
		v = strstr(line, " stock_bytes=");
		stock += strtol(v + 13, NULL, 10);
		v = strstr(line, " charged_bytes=");
		charged += strtol(v + 15, NULL, 10);
		v = strstr(line, " slab_reclaimable=");
		slab += strtol(v + 18, NULL, 10);
		v = strstr(line, " slab_unreclaimable=");
		slab += strtol(v + 20, NULL, 10);
		v = strstr(line, " vmstat_slab_reclaimable=");
		vm += strtol(v + 25, NULL, 10);
		v = strstr(line, " vmstat_slab_unreclaimable=");
		vm += strtol(v + 27, NULL, 10);
	}
	free(text);
	for (cpu = 0; cpu < FX_CPUS; cpu++) {
		const struct osh_stock *st = &fx.cpu[cpu].stock[d];

		/* the 7.3 stock batches once per CPU, the 6.1 one per slot */
		pend += st->stat_b[0] + st->stat_b[1];
		for (i = 0; i < OSH_STOCK_MAX_SLOTS; i++) {
			pend += st->slot[i].nr_slab_b[0] + st->slot[i].nr_slab_b[1];
			CHECK(st->slot[i].nr_bytes <= U16_MAX ||
			      fx.acct.designs[d].stock_kind != OSH_STOCK_ROUND_ROBIN);
		}
	}
	CHECK_EQ(pages * PG, live_bytes + stock + charged);
	CHECK_EQ(slab, live_bytes);
	CHECK_EQ(vm + pend, live_bytes);
}

static void run_random(const char *designs, int steps)
{
	static struct live objs[4096];
	u64 ids[32] = { 10 };
	int nids = 1, nobjs = 0, step;
	unsigned long next_ptr = 0x10000;
	long live_bytes = 0;
	unsigned int d;
	u64 next_id = 11;

	fx_setup(designs);
	fx_memcg(10, 1, 1);
	for (step = 0; step < steps; step++) {
		unsigned long op = rnd(100);

		if (op < 55 && nobjs < (int)ARRAY_SIZE(objs)) {
			unsigned int size = 8 + rnd(9000);
			int r = fx_alloc(rnd(FX_CPUS), ids[rnd(nids)], next_ptr,
					 size, rnd(FX_NODES), rnd(2));

			CHECK_EQ(r, 0);
			objs[nobjs].ptr = next_ptr;
			objs[nobjs++].size = size;
			live_bytes += size;
			next_ptr += 16;
		} else if (op < 95 && nobjs) {
			int i = rnd(nobjs);

			CHECK(fx_free_obj(rnd(FX_CPUS), objs[i].ptr));
			live_bytes -= objs[i].size;
			objs[i] = objs[--nobjs];
		} else if (op < 98 && nids < (int)ARRAY_SIZE(ids)) {
			u64 parent = ids[rnd(nids)];
			struct osh_memcg *pm = osh_memcg_lookup(&fx.tree, parent);

			fx_memcg(next_id, parent, pm->level + 1);
			ids[nids++] = next_id++;
		} else if (nids > 1) {
			/* offline and free a memcg with no online child */
			int i = 1 + rnd(nids - 1), j;
			bool has_child = false;

			for (j = 0; j < nids; j++)
				has_child |= osh_memcg_lookup(&fx.tree, ids[j])->parent_id == ids[i];
			if (has_child)
				continue;
			fx_offline(ids[i]);
			fx_free(ids[i]);
			ids[i] = ids[--nids];
		}
		if (step % 97 == 0)
			for (d = 0; d < fx.acct.nr_designs; d++)
				check_conservation(d, live_bytes);
	}
	for (d = 0; d < fx.acct.nr_designs; d++)
		check_conservation(d, live_bytes);
	while (nobjs) {
		CHECK(fx_free_obj(rnd(FX_CPUS), objs[--nobjs].ptr));
		live_bytes -= objs[nobjs].size;
	}
	fx_drain_all();
	for (d = 0; d < fx.acct.nr_designs; d++) {
		check_conservation(d, 0);
		CHECK_EQ(fx_stat(10, d, "kmem_pages") >= 0, 1);
	}
	CHECK_EQ(atomic_long_read(&fx.acct.objmap.nr), 0);
	fx_teardown();
}

static void test_random_conservation_61(void)
{
	run_random("v6.1", 20000);
}

static void test_random_conservation_all_designs(void)
{
	run_random("v6.1,v6.7,v7.1,pernode,v7.1+stock4,v7.1+memcgkey,v7.1+stock2+memcgkey",
		   20000);
}

static void test_random_conservation_73(void)
{
	run_random("v7.3,v7.3+pernode,v7.3+pagenode,v7.3+stock2,v6.1", 20000);
}

/* --- the 7.3 stock: five slots, round robin, one stats batch per CPU --- */

static void test_rr_five_slots_then_round_robin(void)
{
	struct osh_dcounters c;
	u64 id;

	fx_setup("v7.3");
	for (id = 10; id < 17; id++)
		fx_memcg(id, 1, 1);
	/* five memcgs fill the five slots: no drain */
	for (id = 10; id < 15; id++)
		CHECK_EQ(fx_alloc(0, id, id << 12, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.stock_takes, 5);
	CHECK_EQ(c.drain_objcg, 0);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), PG - 100);
	/* the sixth evicts slot 0 (memcg 10), the seventh slot 1 (11) */
	CHECK_EQ(fx_alloc(0, 15, 15 << 12, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 16, 16 << 12, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.drain_objcg, 2);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), 0);
	CHECK_EQ(fx_stat(10, 0, "charged_bytes"), PG - 100);
	CHECK_EQ(fx_stat(11, 0, "charged_bytes"), PG - 100);
	CHECK_EQ(fx_stat(12, 0, "stock_bytes"), PG - 100);
	/*
	 * 12 is still cached: a hit, no take.  10 again takes slot 2 (the
	 * round-robin victim, memcg 12) and starts from its remainder.
	 */
	CHECK_EQ(fx_alloc(0, 12, 0x99000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 10, 0x98000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.stock_hits, 1);
	CHECK_EQ(c.drain_objcg, 3);
	CHECK_EQ(fx_stat(10, 0, "charged_bytes"), 0);
	CHECK_EQ(fx_stat(12, 0, "charged_bytes"), PG - 200);
	/* its new page plus the old remainder passed PAGE_SIZE: one back */
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 1);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), PG - 200);
	fx_teardown();
}

/*
 * A stock seeded from the kernel's (at load): the kernel's objcgs keep
 * their slots, slots of objcgs the shadow cannot name are evicted like
 * any other without moving bytes, and the next victim is the kernel's.
 */
static void test_rr_seeded_stock_evicts_as_the_kernel(void)
{
	struct osh_memcg *m10, *m11;
	struct osh_objcg *held[5];
	struct osh_dcounters c;
	u64 id;

	fx_setup("v7.3");
	m10 = fx_memcg(10, 1, 1);
	m11 = fx_memcg(11, 1, 1);
	for (id = 12; id < 15; id++)
		fx_memcg(id, 1, 1);
	held[0] = osh_objcg_tryget_active(&fx.acct, 0, m10, 0);
	held[1] = ERR_PTR(-ENOENT);
	held[2] = NULL;
	held[3] = ERR_PTR(-ENOENT);
	held[4] = osh_objcg_tryget_active(&fx.acct, 0, m11, 0);
	CHECK(held[0] && held[4]);
	CHECK(!osh_acct_seed_stock(&fx.acct, 0, fx_cpu(0), 5, held, 5));
	CHECK(!osh_acct_seed_stock(&fx.acct, 0, fx_cpu(0), 3, held, 4));
	CHECK(osh_acct_seed_stock(&fx.acct, 0, fx_cpu(0), 3, held, 5));
	/* only an empty stock is seeded */
	CHECK(!osh_acct_seed_stock(&fx.acct, 0, fx_cpu(0), 3, held, 5));
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.seeded_slots, 2);
	CHECK_EQ(c.seeded_foreign, 2);
	/* 10 keeps slot 0, 12 takes the empty slot 2: no eviction */
	CHECK_EQ(fx_alloc(0, 10, 0x10000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 12, 0x12000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.drain_objcg, 0);
	CHECK_EQ(c.stock_takes, 1);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), PG - 100);
	/* 13 evicts the kernel's victim, slot 3 (foreign); 14 then slot 4 (11) */
	CHECK_EQ(fx_alloc(0, 13, 0x13000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.drain_objcg, 1);
	CHECK_EQ(c.uncharge_ops, 0);
	CHECK_EQ(fx_alloc(0, 14, 0x14000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.drain_objcg, 2);
	CHECK_EQ(fx_stat(11, 0, "charged_bytes"), 0);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), PG - 100);
	CHECK_EQ(fx_stat(12, 0, "stock_bytes"), PG - 100);
	/* the next victim wraps to slot 0 (10), then slot 1 (foreign) */
	CHECK_EQ(fx_alloc(0, 11, 0x11000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), 0);
	CHECK_EQ(fx_stat(10, 0, "charged_bytes"), PG - 100);
	fx_teardown();
}

static void test_rr_differs_from_lru(void)
{
	struct osh_dcounters rr, lru;
	int round;
	u64 id;

	/* v7.3 against 6.1's stock with five slots, least recent replaced */
	fx_setup("v7.3,v6.1+stock5");
	for (id = 10; id < 16; id++)
		fx_memcg(id, 1, 1);
	for (id = 10; id < 15; id++)
		CHECK_EQ(fx_alloc(0, id, id << 12, 64, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	/*
	 * 10 is hot, a sixth memcg keeps coming back: LRU evicts the cold
	 * 11, 12, ...; round robin walks over the hot slot 0 too.
	 */
	for (round = 0; round < 10; round++) {
		CHECK_EQ(fx_alloc(0, 10, 0x100000 + round * 128, 64, 0,
				  OSH_SLAB_UNRECLAIMABLE), 0);
		CHECK_EQ(fx_alloc(0, 15, 0x200000 + round * 128, 64, 0,
				  OSH_SLAB_UNRECLAIMABLE), 0);
	}
	osh_acct_sum_counters(&fx.acct, 0, &rr);
	osh_acct_sum_counters(&fx.acct, 1, &lru);
	CHECK_EQ(lru.drain_objcg, 1);
	CHECK(rr.drain_objcg > lru.drain_objcg);
	fx_teardown();
}

static void test_rr_stats_batch_per_cpu(void)
{
	struct osh_dcounters c;

	fx_setup("v7.3");
	fx_memcg(10, 1, 1);
	fx_memcg(11, 1, 1);
	/* a first value above PAGE_SIZE is still cached (it fits s16) */
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 5000, 0, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "vmstat_slab_reclaimable"), 0);
	/* another objcg takes the one batch: 10's bytes are flushed */
	CHECK_EQ(fx_alloc(0, 11, 0x2000, 300, 0, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "vmstat_slab_reclaimable"), 5000);
	CHECK_EQ(fx_stat(11, 0, "vmstat_slab_reclaimable"), 0);
	/* same objcg, other node: flushed too */
	CHECK_EQ(fx_alloc(0, 11, 0x3000, 300, 1, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_stat(11, 0, "vmstat_slab_reclaimable"), 300);
	/* a second value past PAGE_SIZE flushes the sum */
	CHECK_EQ(fx_alloc(0, 11, 0x4000, 4000, 1, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_stat(11, 0, "vmstat_slab_reclaimable"), 4600);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.drain_node, 2);
	fx_teardown();
}

static void test_rr_busy_stock_writes_through(void)
{
	struct osh_dcounters c;

	fx_setup("v7.3");
	fx_memcg(10, 1, 1);
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	/* an interrupt frees while the kernel's stock is held on CPU 0 */
	fx.cpu[0].kernel_stock_busy = true;
	CHECK(fx_free_obj(0, 0x1000));
	fx.cpu[0].kernel_stock_busy = false;
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.stock_busy, 1);
	/* the bytes went to the objcg, the vmstat straight to the memcg */
	CHECK_EQ(fx_stat(10, 0, "charged_bytes"), 100);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), PG - 100);
	CHECK_EQ(fx_stat(10, 0, "vmstat_slab_unreclaimable"), -100);
	fx_teardown();
}

static void test_pagenode_charges_the_page_node(void)
{
	struct osh_dcounters c;

	fx_setup("v7.3,v7.3+pagenode");
	fx_memcg(10, 1, 1);
	/* CPU 0 is on node 0; the object's page is on node 1 */
	fx.cpu[0].event_node = 1;
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 100, 1, OSH_SLAB_UNRECLAIMABLE), 0);
	fx.cpu[0].event_node = -1;
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.remote_objcg_page, 1);
	osh_acct_sum_counters(&fx.acct, 1, &c);
	CHECK_EQ(c.remote_objcg_page, 0);
	CHECK_EQ(c.remote_objcg_cpu, 1);
	fx_teardown();
}

/*
 * A dead CPU: 6.1 drains only its page stock, so v6.1 keeps the obj
 * stock's bytes (and objcg) on it; 6.12's fix drains it (v6.7).
 */
static void test_cpu_dead_drains_per_design(void)
{
	fx_setup("v6.1,v6.7");
	fx_memcg(10, 1, 1);
	CHECK_EQ(fx_alloc(1, 10, 0x1000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), PG - 100);
	CHECK_EQ(fx_stat(10, 1, "stock_bytes"), PG - 100);
	osh_acct_cpu_dead(&fx.acct, fx_cpu(1));
	CHECK_EQ(fx_stat(10, 0, "stock_bytes"), PG - 100);
	CHECK_EQ(fx_stat(10, 0, "kmem_pages"), 1);
	CHECK_EQ(fx_stat(10, 1, "stock_bytes"), 0);
	/* the drained remainder went to the objcg, still a charged page */
	CHECK_EQ(fx_stat(10, 1, "charged_bytes"), PG - 100);
	CHECK(fx_free_obj(0, 0x1000));
	osh_acct_cpu_online(fx_cpu(1), 1);
	CHECK_EQ(fx_cpu(1)->node, 1);
	fx_teardown();
}

/*
 * A release reached from NMI context (an int3 kprobe's handler) takes
 * locks and calls call_rcu(): it waits for the irq_work, then runs.
 */
static void test_release_from_nmi_is_deferred(void)
{
	long before;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	fx_offline(10);
	CHECK(fx_free_obj(0, 0x1000));
	before = atomic_long_read(&fx.acct.events[OSH_EV_OBJCG_RELEASED]);
	osh_shim_in_nmi = 1;
	fx_drain_all();		/* the stock held the last reference */
	osh_shim_in_nmi = 0;
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJCG_RELEASED]), before);
	CHECK_EQ(osh_shim_run_deferred(), 1);
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJCG_RELEASED]),
		 before + 1);
	fx_teardown();
}

/*
 * Teardown puts every active objcg, however many memcgs there are: it
 * works in batches of 64 and must resume, not restart or stop early.
 */
static void test_teardown_releases_every_objcg(void)
{
	long before, expected = 0;
	unsigned int d;
	u64 id;

	fx_setup("v6.1,v7.1,v7.3,pernode");
	for (id = 10; id < 10 + 150; id++)
		fx_memcg(id, 1, 1);
	for (d = 0; d < fx.acct.nr_designs; d++)
		expected += 150 * (fx.acct.designs[d].per_node_objcg ? FX_NODES : 1);
	before = atomic_long_read(&fx.acct.events[OSH_EV_OBJCG_RELEASED]);
	osh_acct_teardown(&fx.acct, &fx.tree);
	osh_shim_rcu_barrier();
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJCG_RELEASED]) - before,
		 expected);
	osh_tree_destroy(&fx.tree);
	osh_shim_rcu_barrier();
	osh_acct_destroy(&fx.acct);
}

/*
 * An objcg the shadow could not allocate: counted, shown on the memcg's
 * line, and its allocations charged to the parent, as the kernel's walk
 * up the hierarchy would.
 */
static void test_objcg_alloc_failure_is_counted_and_shown(void)
{
	struct osh_memcg *m;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	m = osh_memcg_observe(&fx.tree, 11, 10, 2, OSH_MEMCG_ONLINE, false,
			      GFP_KERNEL);
	CHECK(m);
	osh_shim_fail_alloc_in = 2;	/* design state, then the objcg */
	CHECK_EQ(osh_acct_memcg_online(&fx.acct, m, GFP_KERNEL), -ENOMEM);
	osh_shim_fail_alloc_in = 0;
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJCG_ALLOC_FAILED]), 1);
	CHECK_EQ(fx_stat(11, 0, "objcg_alloc_failed"), 1);
	CHECK_EQ(fx_stat(10, 0, "objcg_alloc_failed"), 0);
	CHECK_EQ(fx_alloc(0, 11, 0x1000, 100, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_stat(11, 0, "objects"), 0);
	CHECK_EQ(fx_stat(10, 0, "objects"), 1);
	CHECK(fx_free_obj(0, 0x1000));
	fx_teardown();
}

/* Objects charged alike share one record; each free leaves the others'. */
static void test_objects_charged_alike_share_a_record(void)
{
	unsigned long p;

	fx_setup("v6.1,v7.1");
	fx_memcg(10, 1, 1);
	fx_memcg(11, 1, 1);
	for (p = 1; p <= 100; p++)
		CHECK_EQ(fx_alloc(0, 10, p * 64, 64, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(atomic_long_read(&fx.acct.nr_objrecs), 1);
	/* another memcg, size, node or type: a record of its own */
	CHECK_EQ(fx_alloc(0, 11, 0x100000, 64, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 10, 0x100040, 128, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 10, 0x100080, 64, 1, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(0, 10, 0x1000c0, 64, 0, OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(atomic_long_read(&fx.acct.nr_objrecs), 5);
	for (p = 1; p < 100; p++)
		CHECK(fx_free_obj(0, p * 64));
	CHECK_EQ(fx_stat(10, 0, "objects"), 4);
	CHECK_EQ(fx_stat(10, 1, "objects"), 4);
	/* the last object of the first record, freed on another CPU */
	CHECK(fx_free_obj(1, 100 * 64));
	CHECK_EQ(fx_stat(10, 0, "objects"), 3);
	CHECK_EQ(fx_stat(11, 0, "objects"), 1);
	CHECK(fx_free_obj(1, 0x100040));
	CHECK_EQ(fx_stat(10, 0, "objects"), 2);
	CHECK(fx_free_obj(0, 0x100000));
	CHECK_EQ(fx_stat(11, 0, "objects"), 0);
	/* records the caches no longer hold went with their last object */
	CHECK(atomic_long_read(&fx.acct.nr_objrecs) <= (long)OSH_OBJREC_CACHE);
	fx_teardown();
}

/* No memory for a record: the object is dropped, counted, and not charged. */
static void test_record_alloc_failure_drops_the_object(void)
{
	struct osh_memcg *m;
	struct osh_objcg *objcg;
	long ref;

	fx_setup("v6.1");
	m = fx_memcg(10, 1, 1);
	objcg = m->design[0]->objcg[0];
	ref = atomic_long_read(&objcg->ref);
	osh_shim_fail_alloc_in = 1;
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 64, 0, OSH_SLAB_UNRECLAIMABLE), -ENOSPC);
	osh_shim_fail_alloc_in = 0;
	CHECK_EQ(atomic_long_read(&fx.acct.events[OSH_EV_OBJ_NO_RECORD]), 1);
	CHECK_EQ(atomic_long_read(&objcg->ref), ref);
	CHECK_EQ(fx_stat(10, 0, "objects"), 0);
	CHECK_EQ(fx_stat(10, 0, "slab_unreclaimable"), 0);
	CHECK(!fx_free_obj(0, 0x1000));
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 64, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(fx_stat(10, 0, "objects"), 1);
	fx_teardown();
}

/* A record's last reference dropped in NMI context is freed from the deferral. */
static void test_record_freed_from_nmi_is_deferred(void)
{
	unsigned int i;
	long live;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	CHECK_EQ(fx_alloc(0, 10, 0x1000, 64, 0, OSH_SLAB_UNRECLAIMABLE), 0);
	/* evict it from CPU 0's cache: charges of many other sizes */
	for (i = 1; i <= 512; i++)
		CHECK_EQ(fx_alloc(0, 10, 0x100000 + i * 0x1000, 64 + i * 8, 0,
				  OSH_SLAB_UNRECLAIMABLE), 0);
	live = atomic_long_read(&fx.acct.nr_objrecs);
	osh_shim_in_nmi = 1;
	CHECK(fx_free_obj(1, 0x1000));
	osh_shim_in_nmi = 0;
	CHECK_EQ(atomic_long_read(&fx.acct.nr_objrecs), live - 1);
	CHECK(osh_shim_run_deferred() >= 1);
	for (i = 1; i <= 512; i++)
		CHECK(fx_free_obj(0, 0x100000 + i * 0x1000));
	fx_teardown();
}


static const struct osh_test tests[] = {
	{ "acct_stock_consume_refill_61", test_stock_consume_refill_61 },
	{ "acct_stock_drains_on_objcg_switch", test_stock_drains_on_objcg_switch },
	{ "acct_vmstat_batched_per_node", test_vmstat_batched_per_node },
	{ "acct_reparent_then_free", test_reparent_then_free },
	{ "acct_hierarchy_fold_on_free", test_hierarchy_fold_on_free },
	{ "acct_root_is_never_charged", test_root_is_never_charged },
	{ "acct_map_full_and_stale", test_map_full_and_stale },
	{ "acct_kernel_uncharged_objects_are_counted",
	  test_kernel_uncharged_objects_are_counted },
	{ "acct_pages_and_stacks", test_pages_and_stacks },
	{ "acct_design_parse", test_design_parse },
	{ "acct_multislot_and_memcgkey_stocks", test_multislot_and_memcgkey_stocks },
	{ "acct_random_conservation_61", test_random_conservation_61 },
	{ "acct_random_conservation_all_designs", test_random_conservation_all_designs },
	{ "acct_random_conservation_73", test_random_conservation_73 },
	{ "acct_rr_five_slots_then_round_robin", test_rr_five_slots_then_round_robin },
	{ "acct_rr_seeded_stock_evicts_as_the_kernel",
	  test_rr_seeded_stock_evicts_as_the_kernel },
	{ "acct_rr_differs_from_lru", test_rr_differs_from_lru },
	{ "acct_rr_stats_batch_per_cpu", test_rr_stats_batch_per_cpu },
	{ "acct_rr_busy_stock_writes_through", test_rr_busy_stock_writes_through },
	{ "acct_pagenode_charges_the_page_node", test_pagenode_charges_the_page_node },
	{ "acct_cpu_dead_drains_per_design", test_cpu_dead_drains_per_design },
	{ "acct_release_from_nmi_is_deferred", test_release_from_nmi_is_deferred },
	{ "acct_teardown_releases_every_objcg", test_teardown_releases_every_objcg },
	{ "acct_objcg_alloc_failure_is_counted_and_shown",
	  test_objcg_alloc_failure_is_counted_and_shown },
	{ "acct_objects_charged_alike_share_a_record",
	  test_objects_charged_alike_share_a_record },
	{ "acct_record_alloc_failure_drops_the_object",
	  test_record_alloc_failure_drops_the_object },
	{ "acct_record_freed_from_nmi_is_deferred",
	  test_record_freed_from_nmi_is_deferred },
};

OSH_TEST_MAIN(tests)
