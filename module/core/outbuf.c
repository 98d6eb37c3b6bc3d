// SPDX-License-Identifier: GPL-2.0
/*
 * Bounded text output shared by every debugfs dump.
 */
#include <objcg_shadow/outbuf.h>

/**
 * osh_buf_printf() - append formatted text
 * @ob: output buffer
 * @fmt: printf format
 *
 * Text that does not fit is dropped, but @ob->len still grows by its full
 * length so the caller knows how large a buffer would have been needed.
 */
void osh_buf_printf(struct osh_buf *ob, const char *fmt, ...)
{
	size_t room = ob->len < ob->size ? ob->size - ob->len : 0;
	va_list args;
	int n;

	va_start(args, fmt);
	n = vsnprintf(room ? ob->buf + ob->len : NULL, room, fmt, args);
	va_end(args);
	if (n > 0)
		ob->len += n;
}

static bool osh_needs_escape(unsigned char c)
{
	return c <= ' ' || c == '\\' || c >= 0x7f;
}

/**
 * osh_buf_puts_escaped() - append a string with unsafe bytes escaped
 * @ob: output buffer
 * @s: string, e.g. a cgroup path
 *
 * Whitespace, backslash and non-ASCII bytes become \ooo octal escapes, as
 * in /proc/mounts, so every record stays one line of space-separated
 * key=value fields whatever a cgroup is named.
 */
void osh_buf_puts_escaped(struct osh_buf *ob, const char *s)
{
	for (; *s; s++) {
		unsigned char c = *s;

		if (osh_needs_escape(c))
			osh_buf_printf(ob, "\\%03o", c);
		else
			osh_buf_printf(ob, "%c", c);
	}
}
