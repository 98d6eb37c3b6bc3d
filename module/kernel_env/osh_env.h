/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The narrow interface the pure core (module/core/) may use, kernel side.
 * tests/shim/osh_env.h provides the same names in userspace.  Anything the
 * core needs from the kernel must be listed here and in the shim.
 */
#ifndef OBJCG_SHADOW_ENV_H
#define OBJCG_SHADOW_ENV_H

#include <linux/types.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/bug.h>
#include <linux/errno.h>
#include <linux/string.h>
#include <linux/slab.h>
#include <linux/list.h>
#include <linux/rculist.h>
#include <linux/rcupdate.h>
#include <linux/spinlock.h>
#include <linux/atomic.h>
#include <linux/refcount.h>
#include <linux/hash.h>
#include <linux/percpu.h>
#include <linux/smp.h>
#include <linux/bitops.h>

#endif /* OBJCG_SHADOW_ENV_H */
