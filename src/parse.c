/*
 * Pure parsers and formatters: durations, sizes, addresses and CIDRs. No
 * libevent and no libconfig here, so the unit tests link this file alone.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acceptd.h"

/* A unit suffix and what one of it is worth. */
struct parse_unit {
	const char	*name;
	long long	 value;
};

/* Duration units, largest first; values in milliseconds. */
static const struct parse_unit parse_duration_units[] = {
	{ "h",	3600000LL },
	{ "m",	60000LL },
	{ "s",	1000LL },
	{ "ms",	1LL }
};

/* Size units, largest first; values in bytes (k = 1024). */
static const struct parse_unit parse_size_units[] = {
	{ "m",	1048576LL },
	{ "M",	1048576LL },
	{ "k",	1024LL },
	{ "K",	1024LL }
};

/* The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:0:0/96). */
static const uint8_t parse_v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

static int	 parse_digits(const char **, long long *);
static int	 parse_is_digit(int);
static int	 parse_is_alpha(int);
static int	 parse_port(const char *, uint16_t *, char **);
static int	 parse_hostname(const char *);
static int	 parse_all_numeric(const char *);
static int	 parse_address_unix(const char *, struct address *, char **);
static int	 parse_address_unspecified(const struct address *);

/* Is c an ASCII digit (whatever the locale says)? */
static int
parse_is_digit(int c)
{
	return (c >= '0' && c <= '9');
}

/* Is c an ASCII letter? */
static int
parse_is_alpha(int c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
}

/*
 * Read the decimal digits at *pp into *v and move past them. Returns 0, -1
 * when there is no digit, or -2 when the number does not fit.
 */
static int
parse_digits(const char **pp, long long *v)
{
	const char	*p = *pp;
	long long	 n = 0;

	if (!parse_is_digit((unsigned char)*p))
		return (-1);
	for (; parse_is_digit((unsigned char)*p); p++) {
		if (__builtin_mul_overflow(n, 10, &n) ||
		    __builtin_add_overflow(n, *p - '0', &n))
			return (-2);
	}
	*pp = p;
	*v = n;
	return (0);
}

/*
 * Parse a duration string: one or more NUMBER UNIT pairs with units ms, s,
 * m and h, largest first and each at most once ("500ms", "1m30s").
 */
int
parse_duration_string(const char *s, long long *ms, char **cause)
{
	const char	*p = s, *u;
	long long	 n, total = 0;
	size_t		 i, ulen, last = 0;
	int		 seen = 0, rc;

	if (*s == '\0') {
		*cause = xstrdup("empty duration");
		return (-1);
	}
	while (*p != '\0') {
		if ((rc = parse_digits(&p, &n)) == -2) {
			*cause = xstrdup("number too large");
			return (-1);
		}
		if (rc != 0) {
			xasprintf(cause, "expected a number at \"%.20s\"", p);
			return (-1);
		}
		for (u = p; parse_is_alpha((unsigned char)*p); p++)
			/* nothing */;
		ulen = (size_t)(p - u);
		if (ulen == 0) {
			*cause = xstrdup("a unit (ms, s, m or h) must follow "
			    "each number");
			return (-1);
		}
		for (i = 0; i < nitems(parse_duration_units); i++) {
			if (strlen(parse_duration_units[i].name) == ulen &&
			    strncmp(parse_duration_units[i].name, u, ulen) == 0)
				break;
		}
		if (i == nitems(parse_duration_units)) {
			xasprintf(cause, "unknown unit \"%.*s\"; the units "
			    "are ms, s, m and h", (int)ulen, u);
			return (-1);
		}
		if (seen && i <= last) {
			*cause = xstrdup("units must go from the largest to "
			    "the smallest, each at most once");
			return (-1);
		}
		if (__builtin_mul_overflow(n, parse_duration_units[i].value,
		    &n) || __builtin_add_overflow(total, n, &total)) {
			*cause = xstrdup("number too large");
			return (-1);
		}
		seen = 1;
		last = i;
	}
	*ms = total;
	return (0);
}

/* Parse a size string: bytes, or a number with k or m (k = 1024). */
int
parse_size_string(const char *s, long long *bytes, char **cause)
{
	const char	*p = s;
	long long	 n;
	size_t		 i;
	int		 rc;

	if (*s == '\0') {
		*cause = xstrdup("empty size");
		return (-1);
	}
	if ((rc = parse_digits(&p, &n)) == -2) {
		*cause = xstrdup("number too large");
		return (-1);
	}
	if (rc != 0) {
		xasprintf(cause, "expected a number at \"%.20s\"", p);
		return (-1);
	}
	if (*p == '\0') {
		*bytes = n;
		return (0);
	}
	for (i = 0; i < nitems(parse_size_units); i++) {
		if (strcmp(parse_size_units[i].name, p) == 0)
			break;
	}
	if (i == nitems(parse_size_units)) {
		xasprintf(cause, "unknown unit \"%s\"; the units are k and m",
		    p);
		return (-1);
	}
	if (__builtin_mul_overflow(n, parse_size_units[i].value, &n)) {
		*cause = xstrdup("number too large");
		return (-1);
	}
	*bytes = n;
	return (0);
}

/* Parse a port: digits only, 1 to 65535. */
static int
parse_port(const char *s, uint16_t *port, char **cause)
{
	const char	*p = s;
	long long	 n;

	if (*s == '\0') {
		*cause = xstrdup("missing port");
		return (-1);
	}
	if (parse_digits(&p, &n) != 0 || *p != '\0' || n < 1 || n > 65535) {
		xasprintf(cause, "invalid port \"%s\": ports are 1 to 65535",
		    s);
		return (-1);
	}
	*port = (uint16_t)n;
	return (0);
}

/* Is s made of digits and dots only (a mistyped IPv4 address)? */
static int
parse_all_numeric(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s != '.' && !parse_is_digit((unsigned char)*s))
			return (0);
	}
	return (1);
}

/*
 * Is s a syntactically valid host name: dot-separated labels of 1 to 63
 * letters, digits, hyphens or underscores, not starting or ending with a
 * hyphen, at most 253 characters, with an optional final dot?
 */
static int
parse_hostname(const char *s)
{
	size_t	 len = strlen(s), label = 0, i;

	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return (0);
	for (i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (label == 0 || s[i - 1] == '-')
				return (0);
			label = 0;
			continue;
		}
		if (!parse_is_alpha((unsigned char)s[i]) &&
		    !parse_is_digit((unsigned char)s[i]) &&
		    s[i] != '-' && s[i] != '_')
			return (0);
		if (s[i] == '-' && label == 0)
			return (0);
		if (++label > 63)
			return (0);
	}
	return (s[len - 1] != '-');
}

/* Parse "unix:/path" into a sockaddr_un. */
static int
parse_address_unix(const char *s, struct address *a, char **cause)
{
	struct sockaddr_un	*sun = (struct sockaddr_un *)&a->ss;
	const char		*path = s + 5;
	size_t			 len = strlen(path);

	if (len == 0) {
		*cause = xstrdup("missing unix socket path after \"unix:\"");
		return (-1);
	}
	if (path[0] != '/') {
		xasprintf(cause, "unix socket path \"%s\" is not absolute",
		    path);
		return (-1);
	}
	if (len >= sizeof sun->sun_path) {
		xasprintf(cause, "unix socket path is %zu bytes long: at most "
		    "%zu", len, sizeof sun->sun_path - 1);
		return (-1);
	}
	a->kind = ADDRESS_UNIX;
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, len + 1);
	a->sslen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	    1);
	return (0);
}

/* Is a the unspecified address (0.0.0.0 or ::)? */
static int
parse_address_unspecified(const struct address *a)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	if (a->ss.ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)&a->ss;
		return (sin->sin_addr.s_addr == htonl(INADDR_ANY));
	}
	sin6 = (const struct sockaddr_in6 *)&a->ss;
	return (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
}

/*
 * Parse an address: "1.2.3.4:80", "[::1]:80", "*:80" (PARSE_ADDRESS_LISTEN
 * only), "unix:/path", or "host.name:80" (PARSE_ADDRESS_BACKEND only).
 */
int
parse_address(const char *s, int flags, struct address *a, char **cause)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&a->ss;
	char			*host = NULL;
	const char		*colon, *end;
	uint16_t		 port;
	size_t			 hlen;

	memset(a, 0, sizeof *a);
	if (*s == '\0') {
		*cause = xstrdup("empty address");
		return (-1);
	}
	if (strncmp(s, "unix:", 5) == 0) {
		if (parse_address_unix(s, a, cause) != 0) {
			memset(a, 0, sizeof *a);
			return (-1);
		}
		a->text = xstrdup(s);
		return (0);
	}

	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL) {
			*cause = xstrdup("missing ']' after the IPv6 address");
			return (-1);
		}
		if (end[1] != ':') {
			*cause = xstrdup(end[1] == '\0' ? "missing port "
			    "after ']'" : "expected ':' and a port after ']'");
			return (-1);
		}
		hlen = (size_t)(end - s - 1);
		host = xmalloc(hlen + 1);
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			xasprintf(cause, "invalid IPv6 address \"%s\"", host);
			goto fail;
		}
		if (parse_port(end + 2, &port, cause) != 0)
			goto fail;
		free(host);
		a->kind = ADDRESS_INET;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		a->port = port;
		a->sslen = sizeof *sin6;
		goto done;
	}

	if ((colon = strrchr(s, ':')) == NULL) {
		*cause = xstrdup("missing port: HOST:PORT, [IPv6]:PORT or "
		    "unix:/path");
		return (-1);
	}
	hlen = (size_t)(colon - s);
	if (memchr(s, ':', hlen) != NULL) {
		*cause = xstrdup("an IPv6 address needs brackets, like "
		    "[::1]:80");
		return (-1);
	}
	if (hlen == 0) {
		*cause = xstrdup("missing host before the port");
		return (-1);
	}
	host = xmalloc(hlen + 1);
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (parse_port(colon + 1, &port, cause) != 0)
		goto fail;
	a->port = port;

	if (strcmp(host, "*") == 0) {
		if (~flags & PARSE_ADDRESS_LISTEN) {
			*cause = xstrdup("\"*\" means any address and is only "
			    "allowed in listen");
			goto fail;
		}
		free(host);
		a->kind = ADDRESS_ANY;
		goto done;
	}
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		free(host);
		a->kind = ADDRESS_INET;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		a->sslen = sizeof *sin;
		goto done;
	}
	if (parse_all_numeric(host)) {
		xasprintf(cause, "invalid IPv4 address \"%s\"", host);
		goto fail;
	}
	if (!parse_hostname(host)) {
		xasprintf(cause, "invalid host name \"%s\"", host);
		goto fail;
	}
	if (~flags & PARSE_ADDRESS_BACKEND) {
		xasprintf(cause, "\"%s\" is a host name; expected an IP "
		    "address%s", host, (flags & PARSE_ADDRESS_LISTEN) ?
		    " or \"*\"" : "");
		goto fail;
	}
	a->kind = ADDRESS_NAME;
	a->host = host;

 done:
	if (a->kind == ADDRESS_INET && (flags & PARSE_ADDRESS_BACKEND) &&
	    parse_address_unspecified(a)) {
		*cause = xstrdup("the unspecified address 0.0.0.0 or :: "
		    "cannot be a backend");
		memset(a, 0, sizeof *a);
		return (-1);
	}
	a->text = xstrdup(s);
	return (0);

 fail:
	free(host);
	memset(a, 0, sizeof *a);
	return (-1);
}

/* Free what an address owns. */
void
address_free(struct address *a)
{
	free(a->text);
	free(a->host);
	a->text = NULL;
	a->host = NULL;
}

/* Copy an address, duplicating its strings. */
void
address_copy(struct address *dst, const struct address *src)
{
	*dst = *src;
	if (src->text != NULL)
		dst->text = xstrdup(src->text);
	if (src->host != NULL)
		dst->host = xstrdup(src->host);
}

/*
 * Do two addresses name the same socket? "*:80" equals "*:80" only, and
 * host names compare without case.
 */
int
address_equal(const struct address *a, const struct address *b)
{
	if (a->kind != b->kind)
		return (0);
	switch (a->kind) {
	case ADDRESS_ANY:
		return (a->port == b->port);
	case ADDRESS_NAME:
		return (a->port == b->port &&
		    strcasecmp(a->host, b->host) == 0);
	case ADDRESS_INET:
	case ADDRESS_UNIX:
		break;
	}
	return (a->sslen == b->sslen && memcmp(&a->ss, &b->ss, a->sslen) == 0);
}

/*
 * Parse "net/prefix" or a bare address (/32 or /128). IPv4-mapped IPv6
 * networks of /96 or longer become IPv4. Host bits must be zero.
 */
int
parse_cidr(const char *s, struct cidr *c, char **cause)
{
	char		 buf[INET6_ADDRSTRLEN + 8], net[INET6_ADDRSTRLEN];
	uint8_t		 masked[16];
	char		*slash;
	const char	*p;
	long long	 n;
	int		 max, i, bits;

	memset(c, 0, sizeof *c);
	if (*s == '\0') {
		*cause = xstrdup("empty network");
		return (-1);
	}
	if (strlen(s) >= sizeof buf) {
		xasprintf(cause, "invalid network \"%.*s...\"", 48, s);
		return (-1);
	}
	memcpy(buf, s, strlen(s) + 1);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';

	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		xasprintf(cause, "invalid address \"%s\"", buf);
		return (-1);
	}

	c->prefix = max;
	if (slash != NULL) {
		p = slash + 1;
		if (parse_digits(&p, &n) != 0 || *p != '\0' || p - slash > 4) {
			xasprintf(cause, "invalid prefix \"/%s\"", slash + 1);
			return (-1);
		}
		if (n > max) {
			xasprintf(cause, "prefix /%lld is too long for %s: at "
			    "most /%d", n, max == 32 ? "IPv4" : "IPv6", max);
			return (-1);
		}
		c->prefix = (int)n;
	}

	if (c->family == AF_INET6 && c->prefix >= 96 &&
	    memcmp(c->addr, parse_v4mapped, sizeof parse_v4mapped) == 0) {
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->family = AF_INET;
		c->prefix -= 96;
	}

	memcpy(masked, c->addr, sizeof masked);
	for (i = 0; i < (int)sizeof masked; i++) {
		bits = c->prefix - i * 8;
		if (bits <= 0)
			masked[i] = 0;
		else if (bits < 8)
			masked[i] &= (uint8_t)(0xff << (8 - bits));
	}
	if (memcmp(masked, c->addr, sizeof masked) != 0) {
		inet_ntop(c->family, masked, net, sizeof net);
		xasprintf(cause, "host bits are set: the network is %s/%d",
		    net, c->prefix);
		memset(c, 0, sizeof *c);
		return (-1);
	}
	c->text = xstrdup(s);
	return (0);
}

/* Free what a CIDR owns. */
void
cidr_free(struct cidr *c)
{
	free(c->text);
	c->text = NULL;
}

/*
 * Does the address in sa fall within c? IPv4-mapped IPv6 addresses count
 * as IPv4; other families never match.
 */
int
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const uint8_t			*addr;
	int				 family, full, rest;

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		addr = (const uint8_t *)&sin->sin_addr;
		family = AF_INET;
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		addr = sin6->sin6_addr.s6_addr;
		family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			addr += 12;
			family = AF_INET;
		}
		break;
	default:
		return (0);
	}
	if (family != c->family)
		return (0);
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(addr, c->addr, (size_t)full) != 0)
		return (0);
	if (rest != 0 &&
	    ((addr[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff) != 0)
		return (0);
	return (1);
}

/*
 * Format a duration in milliseconds in the largest unit that is exact
 * ("3s", "10m", "1500ms"); parse_duration_string reads it back.
 */
const char *
format_duration(long long ms, char *buf, size_t len)
{
	size_t	 i;

	if (ms == 0) {
		snprintf(buf, len, "0s");
		return (buf);
	}
	for (i = 0; i < nitems(parse_duration_units); i++) {
		if (ms % parse_duration_units[i].value == 0)
			break;
	}
	snprintf(buf, len, "%lld%s", ms / parse_duration_units[i].value,
	    parse_duration_units[i].name);
	return (buf);
}

/*
 * Format a size in bytes in the largest unit that is exact ("64k", "1m",
 * "1000"); parse_size_string reads it back.
 */
const char *
format_size(long long bytes, char *buf, size_t len)
{
	if (bytes != 0 && bytes % 1048576 == 0)
		snprintf(buf, len, "%lldm", bytes / 1048576);
	else if (bytes != 0 && bytes % 1024 == 0)
		snprintf(buf, len, "%lldk", bytes / 1024);
	else
		snprintf(buf, len, "%lld", bytes);
	return (buf);
}

/*
 * Format a socket address for logs: "1.2.3.4:80", "[::1]:80" (IPv4-mapped
 * addresses as IPv4), "unix:/path", "unix:@abstract" or "unix:" (unnamed).
 */
const char *
format_sockaddr(const struct sockaddr *sa, socklen_t salen, char *buf,
    size_t len)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const struct sockaddr_un	*sun;
	char				 host[INET6_ADDRSTRLEN];
	size_t				 plen;

	if (sa == NULL || salen < sizeof sa->sa_family) {
		snprintf(buf, len, "unknown");
		return (buf);
	}
	switch (sa->sa_family) {
	case AF_INET:
		if (salen < sizeof *sin)
			break;
		sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
		return (buf);
	case AF_INET6:
		if (salen < sizeof *sin6)
			break;
		sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], host,
			    sizeof host);
			snprintf(buf, len, "%s:%u", host,
			    ntohs(sin6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &sin6->sin6_addr, host,
			    sizeof host);
			snprintf(buf, len, "[%s]:%u", host,
			    ntohs(sin6->sin6_port));
		}
		return (buf);
	case AF_UNIX:
		sun = (const struct sockaddr_un *)sa;
		if (salen <= offsetof(struct sockaddr_un, sun_path)) {
			snprintf(buf, len, "unix:");
			return (buf);
		}
		plen = salen - offsetof(struct sockaddr_un, sun_path);
		if (plen > sizeof sun->sun_path)
			plen = sizeof sun->sun_path;
		if (sun->sun_path[0] == '\0')
			snprintf(buf, len, "unix:@%.*s", (int)plen - 1,
			    sun->sun_path + 1);
		else
			snprintf(buf, len, "unix:%.*s",
			    (int)strnlen(sun->sun_path, plen), sun->sun_path);
		return (buf);
	}
	snprintf(buf, len, "unknown");
	return (buf);
}

/*
 * Do two socket addresses name the same endpoint? Unix addresses compare
 * by path (getsockname may or may not count the final NUL); an unnamed
 * unix socket equals nothing.
 */
int
sockaddr_equal(const struct sockaddr *a, socklen_t alen,
    const struct sockaddr *b, socklen_t blen)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;
	const struct sockaddr_un	*au, *bu;
	size_t				 off = offsetof(struct sockaddr_un,
					     sun_path);

	if (alen == 0 || blen == 0 || a->sa_family != b->sa_family)
		return (0);
	switch (a->sa_family) {
	case AF_INET:
		a4 = (const struct sockaddr_in *)a;
		b4 = (const struct sockaddr_in *)b;
		return (a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr);
	case AF_INET6:
		a6 = (const struct sockaddr_in6 *)a;
		b6 = (const struct sockaddr_in6 *)b;
		return (a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		    sizeof a6->sin6_addr) == 0);
	case AF_UNIX:
		au = (const struct sockaddr_un *)a;
		bu = (const struct sockaddr_un *)b;
		if (alen <= off || blen <= off)
			return (0);
		return (strncmp(au->sun_path, bu->sun_path,
		    sizeof au->sun_path) == 0 && au->sun_path[0] != '\0');
	}
	return (0);
}
