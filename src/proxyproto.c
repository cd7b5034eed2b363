/*
 * PROXY protocol headers (haproxy's proxy-protocol.txt), version 1 (text)
 * and 2 (binary): encoded for send_proxy, strictly decoded for
 * accept_proxy. Pure functions on byte arrays: no libevent here, so the
 * unit tests link this file alone.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "acceptd.h"

/* The 12 bytes every version 2 header starts with. */
static const uint8_t proxyproto_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:0:0/96). */
static const uint8_t proxyproto_v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

#define PROXYPROTO_V1_PREFIX	"PROXY "
#define PROXYPROTO_V2_FIXED	16	/* signature to length */
#define PROXYPROTO_V2_VERSION	0x20
#define PROXYPROTO_V2_LOCAL	0x00
#define PROXYPROTO_V2_PROXY	0x01
#define PROXYPROTO_V2_UNSPEC	0x00	/* family and transport */
#define PROXYPROTO_V2_TCP4	0x11	/* AF_INET, SOCK_STREAM */
#define PROXYPROTO_V2_TCP6	0x21	/* AF_INET6, SOCK_STREAM */
#define PROXYPROTO_V2_UNIX	0x31	/* AF_UNIX, SOCK_STREAM */
#define PROXYPROTO_V2_LEN4	12	/* two IPv4 addresses, two ports */
#define PROXYPROTO_V2_LEN6	36	/* two IPv6 addresses, two ports */
#define PROXYPROTO_V2_LENUNIX	216	/* two 108-byte paths */

/* An address reduced to what a header carries. */
struct proxyproto_addr {
	int		 family;	/* AF_INET, AF_INET6, or 0: none */
	uint8_t		 addr[16];	/* 4 bytes used for AF_INET */
	uint16_t	 port;		/* host order */
};

static void	 proxyproto_addr_get(const struct sockaddr *,
		     struct proxyproto_addr *);
static void	 proxyproto_addr_to_v6(struct proxyproto_addr *);
static void	 proxyproto_addr_set(struct sockaddr_storage *, socklen_t *,
		     int, const uint8_t *, uint16_t);
static int	 proxyproto_encode_v1(const struct proxyproto_addr *,
		     const struct proxyproto_addr *, uint8_t *, size_t);
static int	 proxyproto_encode_v2(const struct proxyproto_addr *,
		     const struct proxyproto_addr *, uint8_t *, size_t);
static int	 proxyproto_prefix(const uint8_t *, size_t, const void *,
		     size_t);
static int	 proxyproto_decode_v1(const uint8_t *, size_t,
		     struct proxyproto *, size_t *, const char **);
static int	 proxyproto_v1_token(const char **, const char *, char *,
		     size_t);
static int	 proxyproto_v1_port(const char *, uint16_t *);
static int	 proxyproto_decode_v2(const uint8_t *, size_t,
		     struct proxyproto *, size_t *, const char **);

/* Reduce a socket address to a header's view; family 0 if it has none. */
static void
proxyproto_addr_get(const struct sockaddr *sa, struct proxyproto_addr *pa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	memset(pa, 0, sizeof *pa);
	if (sa == NULL)
		return;
	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		pa->family = AF_INET;
		memcpy(pa->addr, &sin->sin_addr, 4);
		pa->port = ntohs(sin->sin_port);
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		pa->port = ntohs(sin6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			pa->family = AF_INET;
			memcpy(pa->addr, &sin6->sin6_addr.s6_addr[12], 4);
		} else {
			pa->family = AF_INET6;
			memcpy(pa->addr, &sin6->sin6_addr, 16);
		}
		break;
	}
}

/* Turn an IPv4 address into its IPv4-mapped IPv6 form. */
static void
proxyproto_addr_to_v6(struct proxyproto_addr *pa)
{
	if (pa->family != AF_INET)
		return;
	memmove(pa->addr + 12, pa->addr, 4);
	memcpy(pa->addr, proxyproto_v4mapped, sizeof proxyproto_v4mapped);
	pa->family = AF_INET6;
}

/*
 * Write the header that tells a backend who the client is: src is the
 * client, dst the address it connected to. Both IPv4 (or IPv4-mapped) give
 * TCP4, IPv6 gives TCP6 (an IPv4 side then written IPv4-mapped); anything
 * else (a unix client) gives UNKNOWN in v1 and LOCAL in v2. Returns the
 * length, or -1 if the version is none or len is too small.
 */
int
proxyproto_encode(enum send_proxy version, const struct sockaddr *src,
    const struct sockaddr *dst, uint8_t *buf, size_t len)
{
	struct proxyproto_addr	 s, d;

	proxyproto_addr_get(src, &s);
	proxyproto_addr_get(dst, &d);
	if (s.family == 0 || d.family == 0)
		s.family = d.family = 0;
	else if (s.family != d.family) {
		proxyproto_addr_to_v6(&s);
		proxyproto_addr_to_v6(&d);
	}
	switch (version) {
	case SEND_PROXY_V1:
		return (proxyproto_encode_v1(&s, &d, buf, len));
	case SEND_PROXY_V2:
		return (proxyproto_encode_v2(&s, &d, buf, len));
	case SEND_PROXY_NONE:
		break;
	}
	return (-1);
}

/* The text header: "PROXY TCP4 src dst sport dport\r\n" or UNKNOWN. */
static int
proxyproto_encode_v1(const struct proxyproto_addr *s,
    const struct proxyproto_addr *d, uint8_t *buf, size_t len)
{
	char	 sh[INET6_ADDRSTRLEN], dh[INET6_ADDRSTRLEN];
	int	 n;

	if (s->family == 0)
		n = snprintf((char *)buf, len, "PROXY UNKNOWN\r\n");
	else {
		inet_ntop(s->family, s->addr, sh, sizeof sh);
		inet_ntop(d->family, d->addr, dh, sizeof dh);
		n = snprintf((char *)buf, len, "PROXY %s %s %s %u %u\r\n",
		    s->family == AF_INET ? "TCP4" : "TCP6", sh, dh, s->port,
		    d->port);
	}
	if (n < 0 || (size_t)n >= len)
		return (-1);
	return (n);
}

/* The binary header: signature, PROXY or LOCAL, family, addresses. */
static int
proxyproto_encode_v2(const struct proxyproto_addr *s,
    const struct proxyproto_addr *d, uint8_t *buf, size_t len)
{
	size_t	 alen = 0, off = PROXYPROTO_V2_FIXED;

	if (s->family == AF_INET)
		alen = 4;
	else if (s->family == AF_INET6)
		alen = 16;
	if (len < PROXYPROTO_V2_FIXED + 2 * alen + (alen ? 4 : 0))
		return (-1);
	memcpy(buf, proxyproto_sig, sizeof proxyproto_sig);
	if (alen == 0) {
		buf[12] = PROXYPROTO_V2_VERSION | PROXYPROTO_V2_LOCAL;
		buf[13] = PROXYPROTO_V2_UNSPEC;
		buf[14] = buf[15] = 0;
		return (PROXYPROTO_V2_FIXED);
	}
	buf[12] = PROXYPROTO_V2_VERSION | PROXYPROTO_V2_PROXY;
	buf[13] = alen == 4 ? PROXYPROTO_V2_TCP4 : PROXYPROTO_V2_TCP6;
	buf[14] = 0;
	buf[15] = (uint8_t)(2 * alen + 4);
	memcpy(buf + off, s->addr, alen);
	off += alen;
	memcpy(buf + off, d->addr, alen);
	off += alen;
	buf[off++] = (uint8_t)(s->port >> 8);
	buf[off++] = (uint8_t)(s->port & 0xff);
	buf[off++] = (uint8_t)(d->port >> 8);
	buf[off++] = (uint8_t)(d->port & 0xff);
	return ((int)off);
}

/* Build a socket address from a header's address and port. */
static void
proxyproto_addr_set(struct sockaddr_storage *ss, socklen_t *sslen,
    int family, const uint8_t *addr, uint16_t port)
{
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;

	memset(ss, 0, sizeof *ss);
	if (family == AF_INET) {
		sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		sin->sin_port = htons(port);
		*sslen = sizeof *sin;
	} else {
		sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		sin6->sin6_port = htons(port);
		*sslen = sizeof *sin6;
	}
}

/*
 * Do the len bytes seen so far agree with the start of want? 1: they
 * match all of it, 0: a match so far but too short to tell, -1: no.
 */
static int
proxyproto_prefix(const uint8_t *buf, size_t len, const void *want,
    size_t wlen)
{
	size_t	 n = len < wlen ? len : wlen;

	if (memcmp(buf, want, n) != 0)
		return (-1);
	return (n == wlen ? 1 : 0);
}

/*
 * Decode the header at the start of buf (len bytes received so far).
 * Returns 1 with *pp filled and *used its length, 0 if more bytes are
 * needed (at most PROXYPROTO_MAX in all), -1 if it is not a valid header,
 * with *why saying what is wrong. With pp->local set, the header carries
 * no client address (v1 UNKNOWN, v2 LOCAL, UNSPEC or UNIX): the real
 * connection's addresses stand.
 */
int
proxyproto_decode(const uint8_t *buf, size_t len, struct proxyproto *pp,
    size_t *used, const char **why)
{
	int	 v1, v2;

	memset(pp, 0, sizeof *pp);
	*used = 0;
	*why = NULL;
	if (len == 0)
		return (0);
	v1 = proxyproto_prefix(buf, len, PROXYPROTO_V1_PREFIX,
	    strlen(PROXYPROTO_V1_PREFIX));
	v2 = proxyproto_prefix(buf, len, proxyproto_sig,
	    sizeof proxyproto_sig);
	if (v1 == 1)
		return (proxyproto_decode_v1(buf, len, pp, used, why));
	if (v2 == 1)
		return (proxyproto_decode_v2(buf, len, pp, used, why));
	if (v1 == 0 || v2 == 0)
		return (0);
	*why = "no PROXY protocol signature";
	return (-1);
}

/*
 * Version 1: one line of at most 107 bytes, CRLF included, fields split by
 * single spaces: "PROXY TCP4|TCP6 src dst sport dport" or "PROXY UNKNOWN"
 * (whatever follows UNKNOWN is ignored).
 */
static int
proxyproto_decode_v1(const uint8_t *buf, size_t len, struct proxyproto *pp,
    size_t *used, const char **why)
{
	char		 line[PROXYPROTO_V1_MAX], proto[16];
	char		 src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	char		 sport[8], dport[8];
	const char	*p;
	uint8_t		 sa[16], da[16];
	uint16_t	 sp, dp;
	size_t		 i, n, end = 0;
	int		 family;

	n = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
	for (i = 0; i < n; i++) {
		if (buf[i] == '\r') {
			if (i + 1 < len && buf[i + 1] != '\n') {
				*why = "v1: CR not followed by LF";
				return (-1);
			}
			if (i + 1 < n) {
				end = i;
				break;
			}
			continue;
		}
		if (buf[i] < 0x20 || buf[i] > 0x7e) {
			*why = "v1: a byte that is not printable ASCII";
			return (-1);
		}
	}
	if (end == 0) {
		if (len >= PROXYPROTO_V1_MAX) {
			*why = "v1: no CRLF within 107 bytes";
			return (-1);
		}
		return (0);
	}
	memcpy(line, buf, end);
	line[end] = '\0';
	*used = end + 2;
	pp->version = 1;

	p = line + strlen(PROXYPROTO_V1_PREFIX);
	if (proxyproto_v1_token(&p, " ", proto, sizeof proto) == -1)
		goto bad;
	if (strcmp(proto, "UNKNOWN") == 0) {
		pp->local = 1;
		return (1);
	}
	if (strcmp(proto, "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(proto, "TCP6") == 0)
		family = AF_INET6;
	else {
		*why = "v1: protocol is not TCP4, TCP6 or UNKNOWN";
		return (-1);
	}
	if (*p++ != ' ' ||
	    proxyproto_v1_token(&p, " ", src, sizeof src) == -1 ||
	    *p++ != ' ' ||
	    proxyproto_v1_token(&p, " ", dst, sizeof dst) == -1 ||
	    *p++ != ' ' ||
	    proxyproto_v1_token(&p, " ", sport, sizeof sport) == -1 ||
	    *p++ != ' ' ||
	    proxyproto_v1_token(&p, "", dport, sizeof dport) == -1 ||
	    *p != '\0')
		goto bad;
	if (inet_pton(family, src, sa) != 1 ||
	    inet_pton(family, dst, da) != 1) {
		*why = family == AF_INET ? "v1: invalid IPv4 address" :
		    "v1: invalid IPv6 address";
		return (-1);
	}
	if (proxyproto_v1_port(sport, &sp) == -1 ||
	    proxyproto_v1_port(dport, &dp) == -1) {
		*why = "v1: invalid port";
		return (-1);
	}
	proxyproto_addr_set(&pp->src, &pp->srclen, family, sa, sp);
	proxyproto_addr_set(&pp->dst, &pp->dstlen, family, da, dp);
	return (1);

 bad:
	*why = "v1: malformed line";
	return (-1);
}

/*
 * Copy the non-empty field at *p, up to one of stop's characters or the
 * end, into buf; -1 if it is empty or does not fit.
 */
static int
proxyproto_v1_token(const char **p, const char *stop, char *buf, size_t len)
{
	size_t	 n;

	n = strcspn(*p, stop);
	if (n == 0 || n >= len)
		return (-1);
	memcpy(buf, *p, n);
	buf[n] = '\0';
	*p += n;
	return (0);
}

/* A port: 0 to 65535 in decimal, without leading zeros. */
static int
proxyproto_v1_port(const char *s, uint16_t *port)
{
	unsigned long	 v = 0;
	size_t		 i;

	if (s[0] == '0' && s[1] != '\0')
		return (-1);
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 5)
			return (-1);
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (i == 0 || v > 65535)
		return (-1);
	*port = (uint16_t)v;
	return (0);
}

/*
 * Version 2: signature, version 2 with LOCAL or PROXY, family and
 * transport, then a length covering the addresses and any TLVs. TLVs are
 * walked (each must fit exactly in the block) and otherwise ignored.
 */
static int
proxyproto_decode_v2(const uint8_t *buf, size_t len, struct proxyproto *pp,
    size_t *used, const char **why)
{
	const uint8_t	*a;
	size_t		 total, alen, off, tlen;
	int		 family;

	if (len < PROXYPROTO_V2_FIXED)
		return (0);
	if ((buf[12] & 0xf0) != PROXYPROTO_V2_VERSION) {
		*why = "v2: version is not 2";
		return (-1);
	}
	if ((buf[12] & 0x0f) != PROXYPROTO_V2_LOCAL &&
	    (buf[12] & 0x0f) != PROXYPROTO_V2_PROXY) {
		*why = "v2: command is neither LOCAL nor PROXY";
		return (-1);
	}
	total = PROXYPROTO_V2_FIXED + (((size_t)buf[14] << 8) | buf[15]);
	switch (buf[13]) {
	case PROXYPROTO_V2_UNSPEC:
		alen = 0;
		family = 0;
		break;
	case PROXYPROTO_V2_TCP4:
		alen = PROXYPROTO_V2_LEN4;
		family = AF_INET;
		break;
	case PROXYPROTO_V2_TCP6:
		alen = PROXYPROTO_V2_LEN6;
		family = AF_INET6;
		break;
	case PROXYPROTO_V2_UNIX:
		alen = PROXYPROTO_V2_LENUNIX;
		family = 0;
		break;
	default:
		/* LOCAL ignores the family; PROXY needs a stream one. */
		if ((buf[12] & 0x0f) == PROXYPROTO_V2_LOCAL) {
			alen = 0;
			family = 0;
			break;
		}
		*why = "v2: family is not TCP over IPv4, IPv6 or unix";
		return (-1);
	}
	if ((buf[12] & 0x0f) == PROXYPROTO_V2_LOCAL) {
		alen = 0;
		family = 0;
	}
	if (total < PROXYPROTO_V2_FIXED + alen) {
		*why = "v2: length too short for the addresses";
		return (-1);
	}
	if (len < total)
		return (0);

	/* Every TLV after the addresses must fit the block exactly. */
	if ((buf[12] & 0x0f) == PROXYPROTO_V2_PROXY) {
		off = PROXYPROTO_V2_FIXED + alen;
		while (off < total) {
			if (total - off < 3) {
				*why = "v2: truncated TLV";
				return (-1);
			}
			tlen = ((size_t)buf[off + 1] << 8) | buf[off + 2];
			if (tlen > total - off - 3) {
				*why = "v2: TLV longer than the header";
				return (-1);
			}
			off += 3 + tlen;
		}
	}

	pp->version = 2;
	*used = total;
	if (family == 0) {
		pp->local = 1;
		return (1);
	}
	a = buf + PROXYPROTO_V2_FIXED;
	alen = family == AF_INET ? 4 : 16;
	proxyproto_addr_set(&pp->src, &pp->srclen, family, a,
	    (uint16_t)((a[2 * alen] << 8) | a[2 * alen + 1]));
	proxyproto_addr_set(&pp->dst, &pp->dstlen, family, a + alen,
	    (uint16_t)((a[2 * alen + 2] << 8) | a[2 * alen + 3]));
	return (1);
}
