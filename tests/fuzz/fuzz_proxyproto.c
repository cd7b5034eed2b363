/*
 * fuzz_proxyproto.c: libFuzzer target for the PROXY protocol v1/v2 decoder.
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
 * Every input is decoded whole and byte by byte growing, as acceptd sees
 * it arrive. A header that decodes is encoded again in the version it came
 * in, and that must decode to the same addresses.
 */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fuzz_proxyproto_check(const uint8_t *, size_t,
		    struct proxyproto *, size_t *, int *);
static void	fuzz_proxyproto_again(const struct proxyproto *);
static void	fuzz_proxyproto_norm(const struct sockaddr_storage *, int *,
		    uint8_t *, uint16_t *);
static int	fuzz_proxyproto_same(const struct sockaddr_storage *,
		    const struct sockaddr_storage *);

/* Stop on a broken promise of proxyproto_decode. */
static void
fuzz_proxyproto_check(const uint8_t *buf, size_t len, struct proxyproto *pp,
    size_t *used, int *rv)
{
	const char	*why;

	*rv = proxyproto_decode(buf, len, pp, used, &why);
	switch (*rv) {
	case 1:
		if (*used == 0 || *used > len || *used > PROXYPROTO_MAX)
			abort();
		if (pp->version != 1 && pp->version != 2)
			abort();
		if (!pp->local && (pp->srclen == 0 || pp->dstlen == 0 ||
		    pp->src.ss_family != pp->dst.ss_family))
			abort();
		break;
	case 0:
		if (*used != 0 || len >= PROXYPROTO_MAX)
			abort();
		break;
	case -1:
		if (why == NULL || *why == '\0')
			abort();
		break;
	default:
		abort();
	}
}

/*
 * Reduce a decoded address to family, 16 address bytes and port, an
 * IPv4-mapped IPv6 address as IPv4 (the encoder writes those as TCP4).
 */
static void
fuzz_proxyproto_norm(const struct sockaddr_storage *ss, int *family,
    uint8_t *addr, uint16_t *port)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	memset(addr, 0, 16);
	*family = ss->ss_family;
	*port = 0;
	if (ss->ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)ss;
		memcpy(addr, &sin->sin_addr, 4);
		*port = sin->sin_port;
	} else if (ss->ss_family == AF_INET6) {
		sin6 = (const struct sockaddr_in6 *)ss;
		*port = sin6->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			*family = AF_INET;
			memcpy(addr, &sin6->sin6_addr.s6_addr[12], 4);
		} else
			memcpy(addr, &sin6->sin6_addr, 16);
	} else
		abort();
}

/* Are two decoded addresses the same address and port? */
static int
fuzz_proxyproto_same(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	uint8_t		 aa[16], ba[16];
	uint16_t	 ap, bp;
	int		 af, bf;

	fuzz_proxyproto_norm(a, &af, aa, &ap);
	fuzz_proxyproto_norm(b, &bf, ba, &bp);
	return (af == bf && ap == bp && memcmp(aa, ba, 16) == 0);
}

/* Encode a decoded header again and decode that. */
static void
fuzz_proxyproto_again(const struct proxyproto *pp)
{
	struct proxyproto	 back;
	uint8_t			 buf[PROXYPROTO_ENCODE_MAX];
	size_t			 used;
	int			 n, rv;

	n = proxyproto_encode(pp->version == 1 ? SEND_PROXY_V1 : SEND_PROXY_V2,
	    (const struct sockaddr *)&pp->src,
	    (const struct sockaddr *)&pp->dst, buf, sizeof buf);
	if (n <= 0)
		abort();
	fuzz_proxyproto_check(buf, (size_t)n, &back, &used, &rv);
	if (rv != 1 || used != (size_t)n || back.version != pp->version ||
	    back.local)
		abort();
	if (!fuzz_proxyproto_same(&back.src, &pp->src) ||
	    !fuzz_proxyproto_same(&back.dst, &pp->dst))
		abort();
}

/* One input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto	 pp, part;
	uint8_t			*copy;
	size_t			 used, pused, i;
	int			 rv, prv;

	/* A copy of the exact size, so that ASan sees any overread. */
	if ((copy = calloc(1, size == 0 ? 1 : size)) == NULL)
		return (0);
	if (size != 0)
		memcpy(copy, data, size);
	fuzz_proxyproto_check(copy, size, &pp, &used, &rv);

	/* Arriving in pieces: undecided until the end, then the same. */
	for (i = 0; i < size && i < PROXYPROTO_V1_MAX + 64; i++) {
		fuzz_proxyproto_check(copy, i, &part, &pused, &prv);
		if (prv == 1 && (rv != 1 || pused != used))
			abort();
		if (prv == -1 && rv != -1)
			abort();
	}
	if (rv == 1 && !pp.local)
		fuzz_proxyproto_again(&pp);
	free(copy);
	return (0);
}
