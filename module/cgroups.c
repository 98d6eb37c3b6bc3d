// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel side of the shadow memcg tree: turning css pointers into records,
 * the load-time walk over existing memcgs, and the deferred worker that
 * resolves cgroup paths (which needs a sleepable context).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cgroup.h>
#include <linux/limits.h>
#include <linux/workqueue.h>
#include <objcg_shadow/outbuf.h>
#include "compat.h"
#include "osh_module.h"

#define OSH_PATH_BATCH	64

static atomic_long_t osh_paths_resolved;
static atomic_long_t osh_paths_unresolved;	/* cgroup gone or no memory */
static bool osh_paths_stopping;

static void osh_paths_work_fn(struct work_struct *work);
static DECLARE_WORK(osh_paths_work, osh_paths_work_fn);

static int osh_css_state(struct cgroup_subsys_state *css)
{
	if (css->flags & CSS_RELEASED)
		return OSH_MEMCG_RELEASED;
	if (!(css->flags & CSS_ONLINE))
		return OSH_MEMCG_OFFLINE;
	return OSH_MEMCG_ONLINE;
}

/**
 * osh_memcg_seen_online() - create or advance the record of a memcg css
 * @css: memory css; the caller keeps it alive
 * @discovered: found by the load-time walk
 * @state: state to record
 *
 * Context: any, does not sleep.
 */
void osh_memcg_seen_online(struct cgroup_subsys_state *css, bool discovered,
			   int state)
{
	struct cgroup_subsys_state *parent = css->parent;
	struct osh_memcg *memcg;

	memcg = osh_memcg_observe(&osh_tree, cgroup_id(css->cgroup),
				  parent ? cgroup_id(parent->cgroup) : 0,
				  css->cgroup->level, state, discovered,
				  GFP_ATOMIC | __GFP_NOWARN);
	if (!memcg)
		return;
	osh_kmem_memcg_online(memcg, GFP_ATOMIC | __GFP_NOWARN);
	if (!READ_ONCE(memcg->path))
		osh_paths_kick();
}

/**
 * osh_discover_memcgs() - record every memcg that exists at load time
 *
 * The hooks are attached first, so a memcg created during the walk is seen
 * by one or both; records are idempotent and states only move forward.
 *
 * Return: 0, or -ENOMEM when a record could not be allocated.
 */
int osh_discover_memcgs(void)
{
	struct cgroup_subsys_state *root, *pos;
	long failed = atomic_long_read(&osh_tree.stats.alloc_failed);
	unsigned int seen = 0, nr_dying = 0, i;
	u64 *dying;

	rcu_read_lock();
	root = osh_memcg_root_css();
	css_for_each_descendant_pre(pos, root) {
		osh_memcg_seen_online(pos, true, osh_css_state(pos));
		seen++;
		nr_dying += osh_css_state(pos) != OSH_MEMCG_ONLINE;
	}
	rcu_read_unlock();

	/*
	 * Memcgs already offline (dying: kept by references) had their objcgs
	 * reparented before load: do the same, children first as the kernel
	 * did (reverse pre-order), so that nothing is ever charged to them.
	 * One that dies from now on is seen by the offline hook.
	 */
	dying = kmalloc_array(max(nr_dying, 1U), sizeof(*dying), GFP_KERNEL);
	if (!dying)
		return -ENOMEM;
	i = 0;
	rcu_read_lock();
	css_for_each_descendant_pre(pos, osh_memcg_root_css()) {
		if (i < nr_dying && osh_css_state(pos) != OSH_MEMCG_ONLINE)
			dying[i++] = cgroup_id(pos->cgroup);
	}
	rcu_read_unlock();
	nr_dying = i;
	while (i-- > 0)
		osh_kmem_memcg_offline(dying[i]);
	kfree(dying);

	pr_info("found %u memory cgroups at load, %u of them dying\n", seen,
		nr_dying);
	if (atomic_long_read(&osh_tree.stats.alloc_failed) != failed)
		return -ENOMEM;
	return 0;
}

/* Resolve one batch; returns how many ids were pending. */
static size_t osh_paths_resolve_batch(char *buf)
{
	u64 ids[OSH_PATH_BATCH];
	size_t i, n;

	n = osh_memcg_pending_paths(&osh_tree, ids, ARRAY_SIZE(ids));
	for (i = 0; i < n; i++) {
		struct cgroup *cgrp = cgroup_get_from_id(ids[i]);
		int len;

		if (IS_ERR(cgrp)) {
			atomic_long_inc(&osh_paths_unresolved);
			/* keep the record, mark it so it is not retried */
			osh_memcg_set_path(&osh_tree, ids[i], "?", GFP_KERNEL);
			continue;
		}
		len = cgroup_path_ns(cgrp, buf, PATH_MAX, osh_path_cgroup_ns());
		cgroup_put(cgrp);
		if (len < 0 || len >= PATH_MAX) {
			atomic_long_inc(&osh_paths_unresolved);
			osh_memcg_set_path(&osh_tree, ids[i], "?", GFP_KERNEL);
			continue;
		}
		if (!osh_memcg_set_path(&osh_tree, ids[i], buf, GFP_KERNEL))
			atomic_long_inc(&osh_paths_resolved);
	}
	return n;
}

static void osh_paths_work_fn(struct work_struct *work)
{
	char *buf = kmalloc(PATH_MAX, GFP_KERNEL);

	if (!buf) {
		atomic_long_inc(&osh_tree.stats.alloc_failed);
		return;
	}
	while (!READ_ONCE(osh_paths_stopping) &&
	       osh_paths_resolve_batch(buf) == OSH_PATH_BATCH)
		cond_resched();
	kfree(buf);
}

/**
 * osh_paths_kick() - schedule path resolution for new records
 *
 * Context: any, does not sleep.
 */
void osh_paths_kick(void)
{
	if (!READ_ONCE(osh_paths_stopping))
		schedule_work(&osh_paths_work);
}

/**
 * osh_paths_stop() - stop the path worker and wait for it
 *
 * Context: process; called after every hook is detached.
 */
void osh_paths_stop(void)
{
	WRITE_ONCE(osh_paths_stopping, true);
	cancel_work_sync(&osh_paths_work);
}

/**
 * osh_paths_dump_stats() - path worker counters as key=value lines
 * @ob: output
 */
void osh_paths_dump_stats(struct osh_buf *ob)
{
	osh_buf_printf(ob, "paths_resolved=%ld\npaths_unresolved=%ld\n",
		       atomic_long_read(&osh_paths_resolved),
		       atomic_long_read(&osh_paths_unresolved));
}
