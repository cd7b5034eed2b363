/*
 * fuzz_parse.c: libFuzzer target for the duration, size, address and CIDR
 * parsers.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptd.h"

/*
 * The first byte of an input picks the parser, the rest is the string.
 * What parses must survive the way back: a duration or size formatted and
 * parsed again is the same value, a copied address is equal to itself, a
 * network matches its own address.
 */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fuzz_parse_duration(const char *);
static void	fuzz_parse_size(const char *);
static void	fuzz_parse_address(const char *, int);
static void	fuzz_parse_cidr(const char *);
static void	fuzz_parse_failed(char *);

/* A parser that failed must say why. */
static void
fuzz_parse_failed(char *cause)
{
	if (cause == NULL || *cause == '\0')
		abort();
	free(cause);
}

/* A duration, and back from its formatted text. */
static void
fuzz_parse_duration(const char *s)
{
	char		 buf[64], *cause = NULL;
	long long	 ms, again;

	if (parse_duration_string(s, &ms, &cause) != 0) {
		fuzz_parse_failed(cause);
		return;
	}
	if (cause != NULL || ms < 0)
		abort();
	format_duration(ms, buf, sizeof buf);
	if (parse_duration_string(buf, &again, &cause) != 0 || again != ms)
		abort();
}

/* A size, and back from its formatted text. */
static void
fuzz_parse_size(const char *s)
{
	char		 buf[64], *cause = NULL;
	long long	 bytes, again;

	if (parse_size_string(s, &bytes, &cause) != 0) {
		fuzz_parse_failed(cause);
		return;
	}
	if (cause != NULL || bytes < 0)
		abort();
	format_size(bytes, buf, sizeof buf);
	if (parse_size_string(buf, &again, &cause) != 0 || again != bytes)
		abort();
}

/* An address as a listener or a backend takes it. */
static void
fuzz_parse_address(const char *s, int flags)
{
	struct address	 a, copy;
	char		 buf[128], *cause = NULL;

	memset(&a, 0, sizeof a);
	if (parse_address(s, flags, &a, &cause) != 0) {
		fuzz_parse_failed(cause);
		address_free(&a);
		return;
	}
	if (cause != NULL || a.text == NULL)
		abort();
	if ((a.kind == ADDRESS_NAME) != (a.host != NULL))
		abort();
	if (a.kind == ADDRESS_ANY && (flags & PARSE_ADDRESS_BACKEND))
		abort();
	if (a.kind == ADDRESS_NAME && (flags & PARSE_ADDRESS_LISTEN))
		abort();
	if (a.kind == ADDRESS_INET || a.kind == ADDRESS_UNIX) {
		if (a.sslen == 0 || a.sslen > sizeof a.ss)
			abort();
		format_sockaddr((struct sockaddr *)&a.ss, a.sslen, buf,
		    sizeof buf);
	}
	memset(&copy, 0, sizeof copy);
	address_copy(&copy, &a);
	if (!address_equal(&copy, &a) || !address_equal(&a, &copy))
		abort();
	address_free(&copy);
	address_free(&a);
}

/* A network, which must match its own address. */
static void
fuzz_parse_cidr(const char *s)
{
	struct cidr		 c;
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	char			*cause = NULL;

	memset(&c, 0, sizeof c);
	if (parse_cidr(s, &c, &cause) != 0) {
		fuzz_parse_failed(cause);
		cidr_free(&c);
		return;
	}
	if (cause != NULL)
		abort();
	if (c.family == AF_INET) {
		if (c.prefix < 0 || c.prefix > 32)
			abort();
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		memcpy(&sin.sin_addr, c.addr, 4);
		if (!cidr_match(&c, (struct sockaddr *)&sin))
			abort();
	} else if (c.family == AF_INET6) {
		if (c.prefix < 0 || c.prefix > 128)
			abort();
		memset(&sin6, 0, sizeof sin6);
		sin6.sin6_family = AF_INET6;
		memcpy(&sin6.sin6_addr, c.addr, 16);
		if (!cidr_match(&c, (struct sockaddr *)&sin6))
			abort();
	} else
		abort();
	cidr_free(&c);
}

/* One input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s;

	if (size == 0)
		return (0);
	if ((s = malloc(size)) == NULL)
		return (0);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 5) {
	case 0:
		fuzz_parse_duration(s);
		break;
	case 1:
		fuzz_parse_size(s);
		break;
	case 2:
		fuzz_parse_address(s, PARSE_ADDRESS_LISTEN);
		break;
	case 3:
		fuzz_parse_address(s, PARSE_ADDRESS_BACKEND);
		break;
	case 4:
		fuzz_parse_cidr(s);
		break;
	}
	free(s);
	return (0);
}
