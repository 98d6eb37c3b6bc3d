// SPDX-License-Identifier: GPL-2.0
/*
 * Task caches of the objcg: the v6.7 single cached objcg and the per-node
 * array of the 2026 follow-up, with their update-flag protocol.
 *
 * Attach sets bit 0 of the task's word (any context, lock-free).  The task
 * itself, at its next accounted allocation, refreshes: it atomically
 * clears the flag (dropping the stale references), looks the objcg(s) up
 * in its current memcg, and publishes them with a compare-and-exchange
 * against the cleared word; if attach set the flag meanwhile the exchange
 * fails and the whole refresh is retried (counted), as in the kernel's
 * current_objcg_update().
 */
#include <objcg_shadow/acct.h>
#include "acct_internal.h"

static bool osh_cached(const struct osh_design *design)
{
	return design->task_cache != OSH_TASK_CACHE_NONE;
}

/**
 * osh_task_alloc() - per-task state, every cache flagged for a refresh
 * @acct: accounting state
 * @gfp: allocation context
 *
 * Return: the state or NULL (the caller counts the failure).
 */
struct osh_task *osh_task_alloc(struct osh_acct *acct, gfp_t gfp)
{
	struct osh_task *task;
	unsigned int d;

	task = osh_zalloc(sizeof(*task) +
		       acct->task_nodes_total * sizeof(struct osh_objcg *), gfp);
	if (!task)
		return NULL;
	for (d = 0; d < acct->nr_designs; d++) {
		switch (acct->designs[d].task_cache) {
		case OSH_TASK_CACHE_SINGLE:
			task->word[d] = OSH_TASK_UPDATE;
			break;
		case OSH_TASK_CACHE_PERNODE:
			task->word[d] = (unsigned long)
				&task->nodes[acct->task_nodes_off[d]] |
				OSH_TASK_UPDATE;
			break;
		case OSH_TASK_CACHE_NONE:
			break;
		}
	}
	return task;
}

/**
 * osh_task_mark_update() - attach: the task's memcg changed
 * @acct: accounting state
 * @task: the task's state
 *
 * Context: any; only sets bits.
 */
void osh_task_mark_update(struct osh_acct *acct, struct osh_task *task)
{
	unsigned int d;

	for (d = 0; d < acct->nr_designs; d++)
		if (osh_cached(&acct->designs[d]))
			set_bit(0, &task->word[d]);
}

static struct osh_objcg **osh_task_array(unsigned long word)
{
	return (struct osh_objcg **)(word & ~OSH_TASK_UPDATE);
}

/* current_objcg_update() of v6.7; the node picks v7.1's per-node objcg. */
static struct osh_objcg *osh_refresh_single(struct osh_acct *acct,
					    unsigned int d,
					    struct osh_cpu_ctx *ctx,
					    struct osh_task *task,
					    osh_task_memcg_fn task_memcg,
					    void *arg)
{
	struct osh_objcg *objcg = NULL;
	unsigned long old;
	bool retry = false;

	do {
		/* atomically drop the update flag and the stale objcg */
		old = xchg(&task->word[d], 0UL);
		osh_objcg_put((struct osh_objcg *)(old & ~OSH_TASK_UPDATE));
		old = 0;
		/* a reference from a failed attempt */
		osh_objcg_put(objcg);
		if (retry)
			ctx->cnt[d].task_retry++;
		retry = true;
		objcg = osh_objcg_walk(acct, d, task_memcg(arg), ctx->node);
	} while (!try_cmpxchg(&task->word[d], &old, (unsigned long)objcg));
	ctx->cnt[d].task_refresh++;
	return objcg;
}

/* The same protocol over the per-node array, in one section. */
static struct osh_objcg **osh_refresh_pernode(struct osh_acct *acct,
					      unsigned int d,
					      struct osh_cpu_ctx *ctx,
					      struct osh_task *task,
					      osh_task_memcg_fn task_memcg,
					      void *arg)
{
	struct osh_objcg **array = osh_task_array(READ_ONCE(task->word[d]));
	unsigned long cleared = (unsigned long)array;
	bool retry = false;
	unsigned int n;

	do {
		struct osh_memcg *memcg;

		/* a failed exchange left the attacher's flag in @cleared */
		cleared = (unsigned long)array;
		xchg(&task->word[d], cleared);
		if (retry)
			ctx->cnt[d].task_retry++;
		retry = true;
		memcg = task_memcg(arg);
		for (n = 0; n < acct->nr_nodes; n++) {
			osh_objcg_put(array[n]);
			array[n] = osh_objcg_walk(acct, d, memcg, n);
		}
	} while (!try_cmpxchg(&task->word[d], &cleared, cleared));
	ctx->cnt[d].task_refresh++;
	return array;
}

/**
 * osh_acct_task_objcg() - the objcg design @d charges for @task
 * @acct: accounting state
 * @d: design index, a task-cache design
 * @ctx: this CPU's context
 * @task: the current task's state (only the task itself calls this)
 * @task_memcg: returns the task's current shadow memcg
 * @arg: its argument
 *
 * Context: rcu_read_lock().
 * Return: a referenced objcg for the object, or NULL (root: counted).
 */
struct osh_objcg *osh_acct_task_objcg(struct osh_acct *acct, unsigned int d,
				      struct osh_cpu_ctx *ctx,
				      struct osh_task *task,
				      osh_task_memcg_fn task_memcg, void *arg)
{
	unsigned long word = READ_ONCE(task->word[d]);
	struct osh_objcg *objcg;

	if (acct->designs[d].task_cache == OSH_TASK_CACHE_SINGLE) {
		if (word & OSH_TASK_UPDATE)
			objcg = osh_refresh_single(acct, d, ctx, task,
						   task_memcg, arg);
		else
			objcg = (struct osh_objcg *)word;
	} else {
		struct osh_objcg **array = osh_task_array(word);

		if (word & OSH_TASK_UPDATE)
			array = osh_refresh_pernode(acct, d, ctx, task,
						    task_memcg, arg);
		if (!array) {
			/* no array (allocation failed): as without a cache */
			ctx->cnt[d].task_state_missing++;
			return osh_acct_pick_objcg(acct, d, ctx, task_memcg(arg));
		}
		objcg = array[osh_objcg_node(acct, d, ctx)];
	}
	if (!objcg) {
		ctx->cnt[d].root_bypass++;
		return NULL;
	}
	osh_objcg_get(objcg);
	return objcg;
}

/**
 * osh_acct_pick_all() - the objcg of every design for one allocation
 * @acct: accounting state
 * @ctx: this CPU's context
 * @memcg: the memcg the kernel would charge (lookup designs, remote
 *	   charging)
 * @task: the task's state for the task-cache designs; NULL when the
 *	  allocation does not use the task cache (remote charging)
 * @task_memcg: returns the task's current memcg, for refreshes
 * @arg: its argument
 * @picked: output, referenced objcgs (NULL entries: not charged)
 *
 * A task-cache design with no task state (its allocation failed) charges
 * what a design without the cache would, counted in task_state_missing.
 *
 * Return: how many designs charge something.
 */
int osh_acct_pick_all(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
		      struct osh_memcg *memcg, struct osh_task *task,
		      osh_task_memcg_fn task_memcg, void *arg,
		      struct osh_objcg **picked)
{
	unsigned int d;
	int n = 0;

	for (d = 0; d < acct->nr_designs; d++) {
		if (!osh_cached(&acct->designs[d]) || !task_memcg) {
			picked[d] = osh_acct_pick_objcg(acct, d, ctx, memcg);
		} else if (!task) {
			ctx->cnt[d].task_state_missing++;
			picked[d] = osh_acct_pick_objcg(acct, d, ctx, memcg);
		} else {
			picked[d] = osh_acct_task_objcg(acct, d, ctx, task,
							task_memcg, arg);
		}
		n += !!picked[d];
	}
	return n;
}

static void osh_task_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct osh_task, rcu));
}

/* Drops objcg references and calls call_rcu(): never from NMI. */
static void osh_task_release_head(struct rcu_head *head)
{
	struct osh_task *task = container_of(head, struct osh_task, rcu);
	struct osh_acct *acct = task->acct;
	unsigned int d, n;

	for (d = 0; d < acct->nr_designs; d++) {
		unsigned long word = xchg(&task->word[d], 0UL);

		if (acct->designs[d].task_cache == OSH_TASK_CACHE_SINGLE) {
			osh_objcg_put((struct osh_objcg *)(word & ~OSH_TASK_UPDATE));
		} else if (acct->designs[d].task_cache == OSH_TASK_CACHE_PERNODE) {
			struct osh_objcg **array = osh_task_array(word);

			for (n = 0; array && n < acct->nr_nodes; n++) {
				osh_objcg_put(array[n]);
				array[n] = NULL;
			}
		}
	}
	call_rcu(&task->rcu, osh_task_free_rcu);
}

/**
 * osh_task_release() - drop the references a task's caches hold
 * @acct: accounting state
 * @task: the state, already unreachable for new users
 *
 * The memory goes after an RCU grace period (attachers may still look).
 */
void osh_task_release(struct osh_acct *acct, struct osh_task *task)
{
	task->acct = acct;
	osh_defer(&task->rcu, osh_task_release_head);
}

/**
 * osh_task_free() - free task state that never held a reference
 * @task: the state (e.g. one that could not be published)
 */
void osh_task_free(struct osh_task *task)
{
	kfree(task);
}
