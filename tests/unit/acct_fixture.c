// SPDX-License-Identifier: GPL-2.0
#include "acct_fixture.h"

struct fixture fx;

static void *fx_zalloc(size_t size)
{
	return calloc(1, size);
}

static void fx_free_mem(void *p)
{
	free(p);
}

static struct osh_cpu_ctx *fx_ctx(struct osh_acct *acct, int cpu)
{
	return cpu < FX_CPUS ? &fx.cpu[cpu] : NULL;
}

void fx_setup(const char *designs)
{
	struct osh_design d[OSH_MAX_DESIGNS];
	char err[512];
	int n, cpu;

	memset(&fx, 0, sizeof(fx));
	n = osh_design_parse(d, OSH_MAX_DESIGNS, designs, err, sizeof(err));
	if (n < 0) {
		printf("  bad designs: %s\n", err);
		abort();
	}
	osh_tree_init(&fx.tree, 0, osh_acct_memcg_release);
	CHECK_EQ(osh_acct_init(&fx.acct, d, n, FX_NODES, FX_CPUS, 10, 8,
			       fx_zalloc, fx_free_mem, NULL), 0);
	fx.acct.cpu_ctx = fx_ctx;
	for (cpu = 0; cpu < FX_CPUS; cpu++)
		osh_acct_cpu_init(&fx.acct, &fx.cpu[cpu], cpu,
				  cpu * FX_NODES / FX_CPUS);
	fx_memcg(1, 0, 0);
}

struct osh_memcg *fx_memcg(u64 id, u64 parent_id, int level)
{
	struct osh_memcg *m = osh_memcg_observe(&fx.tree, id, parent_id, level,
						OSH_MEMCG_ONLINE, false,
						GFP_KERNEL);

	CHECK(m);
	CHECK_EQ(osh_acct_memcg_online(&fx.acct, m, GFP_KERNEL), 0);
	return m;
}

void fx_offline(u64 id)
{
	struct osh_memcg *m = osh_memcg_get_by_id(&fx.tree, id);

	CHECK(m);
	osh_memcg_set_state(&fx.tree, id, OSH_MEMCG_OFFLINE);
	osh_acct_memcg_offline(&fx.acct, m);
	osh_memcg_put(m);
}

void fx_free(u64 id)
{
	struct osh_memcg *m = osh_memcg_get_by_id(&fx.tree, id);

	CHECK(m);
	osh_memcg_set_state(&fx.tree, id, OSH_MEMCG_RELEASED);
	osh_acct_memcg_freed(&fx.acct, m);
	osh_memcg_set_state(&fx.tree, id, OSH_MEMCG_FREED);
	osh_memcg_put(m);
}

struct osh_cpu_ctx *fx_cpu(int cpu)
{
	return &fx.cpu[cpu];
}

int fx_alloc(int cpu, u64 memcg_id, unsigned long ptr, unsigned int size,
	     int node, enum osh_slab_type type)
{
	struct osh_memcg *m = osh_memcg_lookup(&fx.tree, memcg_id);
	int saved = fx.cpu[cpu].event_node, ret;

	CHECK(m);
	/* as the glue does: the event's page node, for +pagenode designs */
	if (saved < 0)
		fx.cpu[cpu].event_node = node;
	ret = osh_acct_slab_alloc(&fx.acct, &fx.cpu[cpu], m, NULL, ptr, size,
				  node, type, 0);
	fx.cpu[cpu].event_node = saved;
	return ret;
}

bool fx_free_obj(int cpu, unsigned long ptr)
{
	return osh_acct_slab_free(&fx.acct, &fx.cpu[cpu], ptr);
}

void fx_drain_all(void)
{
	int cpu;

	for (cpu = 0; cpu < FX_CPUS; cpu++)
		osh_acct_drain_cpu(&fx.acct, &fx.cpu[cpu]);
}

/* A dump of design @d measured, then written: the caller frees it. */
char *fx_dump_of(fx_dump_fn dump, unsigned int d)
{
	struct osh_buf ob;
	char *buf;

	osh_buf_init(&ob, NULL, 0);
	dump(&fx.acct, &fx.tree, d, &ob);
	buf = malloc(ob.len + 1);
	osh_buf_init(&ob, buf, ob.len + 1);
	dump(&fx.acct, &fx.tree, d, &ob);
	return buf;
}

char *fx_dump(unsigned int d)
{
	return fx_dump_of(osh_acct_dump_memcgs, d);
}

/* Local value of @key for memcg @memcg_id in design @d's dump; -999 if absent. */
long fx_stat(u64 memcg_id, unsigned int d, const char *key)
{
	char *text = fx_dump(d), pat[64], kpat[80];
	const char *line, *v;
	long value = -999;

	snprintf(pat, sizeof(pat), "id=%llu ", (unsigned long long)memcg_id);
	snprintf(kpat, sizeof(kpat), " %s=", key);
	for (line = text; *line; line = strchr(line, '\n') + 1) {
		if (!strncmp(line, pat, strlen(pat))) {
			v = strstr(line, kpat);
			if (v && v < strchr(line, '\n'))
				value = strtol(v + strlen(kpat), NULL, 10);
			break;
		}
	}
	free(text);
	return value;
}

void fx_teardown(void)
{
	fx_drain_all();
	osh_acct_teardown(&fx.acct, &fx.tree);
	/* every object record went with its objects and the CPU caches */
	CHECK_EQ(atomic_long_read(&fx.acct.nr_objrecs), 0);
	osh_tree_destroy(&fx.tree);
	osh_shim_rcu_barrier();
	osh_acct_destroy(&fx.acct);
}
