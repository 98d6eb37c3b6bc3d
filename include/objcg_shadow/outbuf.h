/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Text output with snprintf semantics: appending never overflows, and
 * osh_buf.len always holds the length the full text would need, so a
 * caller can size a buffer with a first pass on a NULL buffer.
 */
#ifndef OBJCG_SHADOW_OUTBUF_H
#define OBJCG_SHADOW_OUTBUF_H

#include "osh_env.h"

struct osh_buf {
	char *buf;
	size_t size;
	size_t len;
};

static inline void osh_buf_init(struct osh_buf *ob, char *buf, size_t size)
{
	ob->buf = buf;
	ob->size = buf ? size : 0;
	ob->len = 0;
	if (ob->size)
		ob->buf[0] = '\0';
}

__printf(2, 3) void osh_buf_printf(struct osh_buf *ob, const char *fmt, ...);
void osh_buf_puts_escaped(struct osh_buf *ob, const char *s);

#endif /* OBJCG_SHADOW_OUTBUF_H */
