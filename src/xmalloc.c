/*
 * Allocation that never returns NULL, for startup and configuration paths:
 * running out of memory there is fatal (OpenBSD/tmux xmalloc).
 */
#include <sys/types.h>

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptd.h"

/* Allocate size bytes. */
void *
xmalloc(size_t size)
{
	void	*ptr;

	if (size == 0)
		fatalx("xmalloc: zero size");
	ptr = malloc(size);
	if (ptr == NULL)
		fatal("xmalloc: allocating %zu bytes", size);
	return (ptr);
}

/* Allocate nmemb zeroed elements of size bytes. */
void *
xcalloc(size_t nmemb, size_t size)
{
	void	*ptr;

	if (size == 0 || nmemb == 0)
		fatalx("xcalloc: zero size");
	ptr = calloc(nmemb, size);
	if (ptr == NULL)
		fatal("xcalloc: allocating %zu * %zu bytes", nmemb, size);
	return (ptr);
}

/* Resize ptr to nmemb elements of size bytes, checking for overflow. */
void *
xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	void	*new_ptr;

	if (nmemb == 0 || size == 0)
		fatalx("xreallocarray: zero size");
	if (SIZE_MAX / nmemb < size)
		fatalx("xreallocarray: %zu * %zu bytes overflows", nmemb, size);
	new_ptr = realloc(ptr, nmemb * size);
	if (new_ptr == NULL)
		fatal("xreallocarray: allocating %zu * %zu bytes", nmemb, size);
	return (new_ptr);
}

/* Copy a string. */
char *
xstrdup(const char *str)
{
	char	*cp;

	if ((cp = strdup(str)) == NULL)
		fatal("xstrdup");
	return (cp);
}

/* Format into a newly allocated string. */
int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	 ap;
	int	 i;

	va_start(ap, fmt);
	i = xvasprintf(ret, fmt, ap);
	va_end(ap);
	return (i);
}

/* Format into a newly allocated string, from a va_list. */
int
xvasprintf(char **ret, const char *fmt, va_list ap)
{
	va_list	 ap2;
	int	 len;

	va_copy(ap2, ap);
	len = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (len < 0)
		fatalx("xvasprintf: %s", strerror(errno));
	*ret = xmalloc((size_t)len + 1);
	if (vsnprintf(*ret, (size_t)len + 1, fmt, ap) != len)
		fatalx("xvasprintf: output changed between passes");
	return (len);
}
