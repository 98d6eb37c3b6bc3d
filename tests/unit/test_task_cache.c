// SPDX-License-Identifier: GPL-2.0
/*
 * Task caches (module/core/task_cache.c): the v6.7 single cached objcg,
 * v7.1's per-node objcg in that cache, and the per-node array, with the
 * update-flag protocol; the stress test runs under ThreadSanitizer too.
 */
#include <sched.h>
#include "acct_fixture.h"

static struct osh_memcg *task_memcg_now;

static struct osh_memcg *fixed_memcg(void *arg)
{
	return __atomic_load_n(&task_memcg_now, __ATOMIC_ACQUIRE);
}

static struct osh_objcg *pick(unsigned int d, int cpu, struct osh_task *t)
{
	struct osh_objcg *picked[OSH_MAX_DESIGNS];

	osh_acct_pick_all(&fx.acct, fx_cpu(cpu), NULL, t, fixed_memcg, NULL,
			  picked);
	for (unsigned int i = 0; i < fx.acct.nr_designs; i++)
		if (i != d)
			osh_objcg_put(picked[i]);
	return picked[d];
}

static void test_single_cache_refresh_on_attach(void)
{
	struct osh_memcg *a, *b;
	struct osh_objcg *o1, *o2, *o3;
	struct osh_dcounters c;
	struct osh_task *t;

	fx_setup("v6.7");
	a = fx_memcg(10, 1, 1);
	b = fx_memcg(11, 1, 1);
	t = osh_task_alloc(&fx.acct, GFP_KERNEL);
	task_memcg_now = a;
	o1 = pick(0, 0, t);
	o2 = pick(0, 1, t);
	CHECK(o1 && o1 == o2 && o1->memcg == a);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.task_refresh, 1);
	/* moved without attach: the cache is (correctly) stale */
	task_memcg_now = b;
	o3 = pick(0, 0, t);
	CHECK(o3 == o1);
	osh_objcg_put(o3);
	osh_task_mark_update(&fx.acct, t);
	o3 = pick(0, 0, t);
	CHECK(o3 && o3->memcg == b);
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.task_refresh, 2);
	osh_objcg_put(o1);
	osh_objcg_put(o2);
	osh_objcg_put(o3);
	osh_task_release(&fx.acct, t);
	fx_teardown();
}

static void test_v71_caches_node_of_first_use(void)
{
	struct osh_objcg *o0, *o1;
	struct osh_task *t;

	fx_setup("v7.1");
	task_memcg_now = fx_memcg(10, 1, 1);
	t = osh_task_alloc(&fx.acct, GFP_KERNEL);
	/* fixture: CPUs 0,1 on node 0; CPUs 2,3 on node 1 */
	o0 = pick(0, 2, t);
	o1 = pick(0, 0, t);
	CHECK(o0 == o1);
	CHECK_EQ(o0->node, 1);	/* node 1 objcg used from a node-0 CPU */
	osh_objcg_put(o0);
	osh_objcg_put(o1);
	osh_task_release(&fx.acct, t);
	fx_teardown();
}

static void test_pernode_array_follows_cpu(void)
{
	struct osh_objcg *o0, *o1;
	struct osh_task *t;

	fx_setup("pernode");
	task_memcg_now = fx_memcg(10, 1, 1);
	t = osh_task_alloc(&fx.acct, GFP_KERNEL);
	o1 = pick(0, 2, t);
	o0 = pick(0, 0, t);
	CHECK(o0 && o1 && o0 != o1);
	CHECK_EQ(o0->node, 0);
	CHECK_EQ(o1->node, 1);
	osh_objcg_put(o0);
	osh_objcg_put(o1);
	osh_task_release(&fx.acct, t);
	fx_teardown();
}

static void test_missing_state_charges_as_lookup(void)
{
	struct osh_dcounters c;

	fx_setup("v6.1,v6.7,pernode");
	task_memcg_now = fx_memcg(10, 1, 1);
	{
		struct osh_objcg *picked[OSH_MAX_DESIGNS];
		int n = osh_acct_pick_all(&fx.acct, fx_cpu(0), task_memcg_now,
					  NULL, fixed_memcg, NULL, picked);
		unsigned int d;

		/* every design charges the memcg's objcg, as a lookup does */
		CHECK_EQ(n, 3);
		for (d = 0; d < 3; d++) {
			CHECK(picked[d] && picked[d]->memcg == task_memcg_now);
			osh_objcg_put(picked[d]);
		}
	}
	osh_acct_sum_counters(&fx.acct, 0, &c);
	CHECK_EQ(c.task_state_missing, 0);
	osh_acct_sum_counters(&fx.acct, 1, &c);
	CHECK_EQ(c.task_state_missing, 1);
	osh_acct_sum_counters(&fx.acct, 2, &c);
	CHECK_EQ(c.task_state_missing, 1);
	fx_teardown();
}

/*
 * The switch shape: tasks of one memcg first allocate on different nodes,
 * then take turns on one CPU.  v7.1's single cache keeps objcgs of two
 * nodes and drains the 1-slot stock at every turn; the per-node array and
 * v6.7 keep one objcg per CPU and do not.
 */
static void test_switch_shape_drains(void)
{
	struct osh_task *t[4];
	struct osh_dcounters c[4];
	unsigned long p = 0x100000;
	int i, round;

	fx_setup("v6.7,v7.1,pernode,v7.1+stock2");
	task_memcg_now = fx_memcg(10, 1, 1);
	for (i = 0; i < 4; i++) {
		t[i] = osh_task_alloc(&fx.acct, GFP_KERNEL);
		struct osh_objcg *picked[OSH_MAX_DESIGNS];

		osh_acct_pick_all(&fx.acct, fx_cpu(i % 2 ? 2 : 0),
				  task_memcg_now, t[i], fixed_memcg, NULL,
				  picked);
		CHECK_EQ(osh_acct_slab_alloc(&fx.acct, fx_cpu(i % 2 ? 2 : 0),
					     task_memcg_now, picked, p += 64,
					     256, 0, OSH_SLAB_UNRECLAIMABLE, 0), 0);
	}
	for (round = 0; round < 100; round++) {
		for (i = 0; i < 4; i++) {
			struct osh_objcg *picked[OSH_MAX_DESIGNS];

			osh_acct_pick_all(&fx.acct, fx_cpu(0), task_memcg_now,
					  t[i], fixed_memcg, NULL, picked);
			CHECK_EQ(osh_acct_slab_alloc(&fx.acct, fx_cpu(0),
						     task_memcg_now, picked,
						     p += 64, 256, 0,
						     OSH_SLAB_UNRECLAIMABLE, 0),
						 0);
		}
	}
	for (i = 0; i < 4; i++)
		osh_acct_sum_counters(&fx.acct, i, &c[i]);
	CHECK(c[1].drain_objcg >= 10 * (c[2].drain_objcg + 1));
	CHECK(c[1].drain_objcg >= 399);
	CHECK(c[2].drain_objcg <= 2 && c[0].drain_objcg <= 2);
	CHECK(c[3].drain_objcg <= 2);	/* two slots hold both nodes' objcgs */
	CHECK(c[1].remote_objcg_cpu >= 200);
	for (i = 0; i < 4; i++)
		osh_task_release(&fx.acct, t[i]);
	/*
	 * Freed on one CPU of node 0, newest first: the warm-up objects of
	 * node 1 alternate with node 0's, so the per-node designs drain on
	 * free while v6.7's one objcg per memcg does not.
	 */
	while (p > 0x100000) {
		fx_free_obj(1, p);
		p -= 64;
	}
	for (i = 0; i < 4; i++) {
		unsigned long before = c[i].drain_on_free;

		osh_acct_sum_counters(&fx.acct, i, &c[i]);
		CHECK_EQ(before, 0);
	}
	CHECK_EQ(c[0].drain_on_free, 0);
	CHECK(c[2].drain_on_free >= 3);
	CHECK(c[2].drain_on_free <= c[2].drain_objcg);
	fx_teardown();
}

/* --- stress: attach races with refresh ---------------------------------- */

#define STRESS_ATTACHES	4000

struct stress {
	struct osh_task *task;
	struct osh_memcg *memcg[2];
	int stop;
	long attaches;
	long lookups;
};

static struct stress *stress_now;

/*
 * The task's memcg as the refresh reads it; yielding now and then widens
 * the window in which an attach can land, even on a single free core.
 */
static struct osh_memcg *stress_memcg(void *arg)
{
	if ((__atomic_add_fetch(&stress_now->lookups, 1, __ATOMIC_RELAXED) & 3) == 0)
		sched_yield();
	return __atomic_load_n(&task_memcg_now, __ATOMIC_ACQUIRE);
}

static bool flag_pending(struct osh_task *t, unsigned int d)
{
	return __atomic_load_n(&t->word[d], __ATOMIC_ACQUIRE) & OSH_TASK_UPDATE;
}

/*
 * cgroup_migrate(): the task moves, then attach flags it.  Each attach
 * waits until the task consumed the previous flag, so attaches and
 * refreshes interleave whatever the scheduler does.
 */
static void *attacher(void *arg)
{
	struct stress *s = arg;
	long i;

	osh_shim_cpu = 3;
	for (i = 0; i < STRESS_ATTACHES; i++) {
		while (flag_pending(s->task, 0) || flag_pending(s->task, 1))
			sched_yield();
		__atomic_store_n(&task_memcg_now, s->memcg[i & 1],
				 __ATOMIC_RELEASE);
		osh_task_mark_update(&fx.acct, s->task);
		s->attaches++;
	}
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

static struct osh_objcg *stress_pick(unsigned int d, struct osh_task *t)
{
	struct osh_objcg *picked[OSH_MAX_DESIGNS];

	osh_acct_pick_all(&fx.acct, fx_cpu(0), NULL, t, stress_memcg, NULL,
			  picked);
	osh_objcg_put(picked[d ^ 1]);
	return picked[d];
}

/* One round; returns the retries seen.  Invariants are checked each round. */
static unsigned long stress_round(void)
{
	struct osh_dcounters c[2];
	struct stress s = {};
	unsigned int d;
	long before[2][2];
	pthread_t th;
	int i;

	fx_setup("v6.7,pernode");
	stress_now = &s;
	s.memcg[0] = fx_memcg(10, 1, 1);
	s.memcg[1] = fx_memcg(11, 1, 1);
	task_memcg_now = s.memcg[0];
	s.task = osh_task_alloc(&fx.acct, GFP_KERNEL);
	/* references held by the memcgs alone */
	for (i = 0; i < 2; i++)
		for (d = 0; d < 2; d++)
			before[i][d] = atomic_long_read(
				&s.memcg[i]->design[d]->objcg[0]->ref);
	osh_shim_cpu = 0;
	pthread_create(&th, NULL, attacher, &s);
	while (!__atomic_load_n(&s.stop, __ATOMIC_ACQUIRE))
		osh_objcg_put(stress_pick(0, s.task));
	pthread_join(th, NULL);
	/* no lost update: the last attach is seen by the next use */
	for (d = 0; d < 2; d++) {
		struct osh_objcg *o = stress_pick(d, s.task);

		CHECK(o && o->memcg == task_memcg_now);
		osh_objcg_put(o);
	}
	osh_task_release(&fx.acct, s.task);
	osh_shim_rcu_barrier();
	/* no leaked or double-dropped reference */
	for (i = 0; i < 2; i++)
		for (d = 0; d < 2; d++)
			CHECK_EQ(atomic_long_read(&s.memcg[i]->design[d]->objcg[0]->ref),
				 before[i][d]);
	for (d = 0; d < 2; d++)
		osh_acct_sum_counters(&fx.acct, d, &c[d]);
	printf("  stress: %ld attaches; v6.7 %lu refreshes %lu retries; pernode %lu refreshes %lu retries\n",
	       s.attaches, c[0].task_refresh, c[0].task_retry,
	       c[1].task_refresh, c[1].task_retry);
	/*
	 * Every attach is consumed exactly once: by a refresh, or by the
	 * retry of the refresh it raced with (the first refresh is the
	 * fork's flag).  A retry that left the flag set would refresh again.
	 */
	for (d = 0; d < 2; d++)
		CHECK_EQ(c[d].task_refresh + c[d].task_retry, s.attaches + 1);
	fx_teardown();
	return c[0].task_retry + c[1].task_retry;
}

/*
 * Rounds repeat until an attach has landed inside a refresh at least once
 * (a retry): only then was the race exercised.  Each round checks the
 * invariants.
 */
static void test_update_protocol_stress(void)
{
	unsigned long retries = 0;
	int round;

	for (round = 0; round < 5 && !retries; round++)
		retries = stress_round();
	CHECK(retries > 0);
}

static const struct osh_test tests[] = {
	{ "task_single_cache_refresh_on_attach", test_single_cache_refresh_on_attach },
	{ "task_v71_caches_node_of_first_use", test_v71_caches_node_of_first_use },
	{ "task_pernode_array_follows_cpu", test_pernode_array_follows_cpu },
	{ "task_missing_state_charges_as_lookup", test_missing_state_charges_as_lookup },
	{ "task_switch_shape_drains", test_switch_shape_drains },
	{ "task_update_protocol_stress", test_update_protocol_stress },
};

OSH_TEST_MAIN(tests)
