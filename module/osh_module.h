/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared state of the kernel glue (the C files in module/).  The pure logic
 * lives in module/core/ and include/objcg_shadow/.
 */
#ifndef OBJCG_SHADOW_MODULE_H
#define OBJCG_SHADOW_MODULE_H

#include <linux/cgroup.h>
#include <objcg_shadow/memcg_tree.h>

#define OSH_VERSION	"0.1.0"

extern struct osh_memcg_tree osh_tree;

int osh_hooks_attach(void);
void osh_hooks_detach(void);
struct osh_buf;
void osh_hooks_dump(struct osh_buf *ob);
void osh_events_dump(struct osh_buf *ob);

int osh_discover_memcgs(void);
void osh_memcg_seen_online(struct cgroup_subsys_state *css, bool discovered,
			   int state);
void osh_paths_kick(void);
void osh_paths_stop(void);
void osh_paths_dump_stats(struct osh_buf *ob);

int osh_debugfs_init(void);
void osh_debugfs_exit(void);

#endif /* OBJCG_SHADOW_MODULE_H */
