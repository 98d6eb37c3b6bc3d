/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared state of the kernel glue (the C files in module/).  The pure logic
 * lives in module/core/ and include/objcg_shadow/.
 */
#ifndef OBJCG_SHADOW_MODULE_H
#define OBJCG_SHADOW_MODULE_H

#include <linux/cgroup.h>
#include <objcg_shadow/acct.h>
#include <objcg_shadow/memcg_tree.h>

#define OSH_VERSION	"0.1.0"

void osh_sum_percpu_counters(void *sum, const void __percpu *pcp,
			     size_t size);

extern struct osh_memcg_tree osh_tree;
extern struct osh_acct osh_acct;

int osh_kernel_verify(void);
bool osh_cache_name(unsigned long cache, char *buf, size_t len);
bool osh_cache_names_known(void);

/* The slab model of the memcgptr design (slab_events.c). */
extern bool osh_slabmodel_enabled;
int osh_slabmodel_init(void);
void osh_slabmodel_exit(void);
void osh_slabmodel_log_alloc(const void *ptr, struct kmem_cache *s,
			     const struct osh_memcg *memcg);
void osh_slabmodel_log_free(const void *ptr);
void osh_slabmodel_log_offline(const struct osh_memcg *memcg);
void osh_slabmodel_dump(struct osh_buf *ob);

int osh_kmem_init(const struct osh_design *designs, unsigned int nr_designs,
		  unsigned int objmap_bits, unsigned int pagemap_bits,
		  unsigned int taskmap_bits, bool grow);
void osh_kmem_discover_tasks(void);
int osh_kmem_start(void);
void osh_kmem_dump_hotplug(struct osh_buf *ob);
void osh_kmem_stop(void);
void osh_kmem_exit(void);
bool osh_kmem_cache_accounted(struct kmem_cache *s, gfp_t gfp);
void osh_kmem_slab_alloc(const void *ptr, struct kmem_cache *s, gfp_t gfp);
void osh_kmem_slab_charge_existing(const void *ptr, gfp_t gfp);
void osh_kmem_slab_free(const void *ptr);
void osh_kmem_percpu_alloc(void __percpu *ptr, size_t size);
void osh_kmem_percpu_free(void __percpu *ptr);
void osh_kmem_page_charged(struct page *page, unsigned int order);
void osh_kmem_page_uncharging(struct page *page);
void osh_kmem_task_forked(struct task_struct *child);
void osh_kmem_drain_this_cpu(void);
void osh_kmem_task_gone(struct task_struct *p);
void osh_kmem_task_attached(struct task_struct *leader, bool threadgroup);
void osh_kmem_memcg_online(struct osh_memcg *memcg, gfp_t gfp);
void osh_kmem_memcg_offline(u64 id);
void osh_kmem_memcg_freed(u64 id);
void osh_kmem_dump_events(struct osh_buf *ob);
void osh_kmem_dump_memcgs(struct osh_buf *ob);
void osh_kmem_dump_designs(struct osh_buf *ob);
void osh_kmem_dump_objects(struct osh_buf *ob);
void osh_kmem_dump_pins(struct osh_buf *ob);
void osh_kmem_dump_slabinfo(struct osh_buf *ob);

int osh_hooks_attach(bool observe, bool probes_only, bool time_handlers);
void osh_hooks_detach(void);
struct osh_buf;
void osh_hooks_dump(struct osh_buf *ob);
void osh_events_dump(struct osh_buf *ob);
void osh_observed_dump(struct osh_buf *ob);

int osh_discover_memcgs(void);
void osh_memcg_seen_online(struct cgroup_subsys_state *css, bool discovered,
			   int state);
void osh_paths_kick(void);
void osh_paths_stop(void);
void osh_paths_dump_stats(struct osh_buf *ob);
void osh_fault_dump_stats(struct osh_buf *ob);

int osh_debugfs_init(void);
void osh_debugfs_exit(void);

#endif /* OBJCG_SHADOW_MODULE_H */
