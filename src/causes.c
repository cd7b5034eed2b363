/*
 * A growing list of error messages, so that every configuration error is
 * reported instead of only the first (tmux cfg_add_cause).
 */
#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "acceptd.h"

/* Append a formatted message. */
void
causes_add(struct causes *c, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	c->v = xreallocarray(c->v, c->n + 1, sizeof *c->v);
	c->v[c->n++] = msg;
}

/* Print every message, one per line. */
void
causes_print(const struct causes *c, FILE *f)
{
	size_t	 i;

	for (i = 0; i < c->n; i++)
		fprintf(f, "%s\n", c->v[i]);
}

/* Free every message and empty the list. */
void
causes_free(struct causes *c)
{
	size_t	 i;

	for (i = 0; i < c->n; i++)
		free(c->v[i]);
	free(c->v);
	c->v = NULL;
	c->n = 0;
}
