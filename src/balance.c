/*
 * The balancing algorithms, pure: given the peers of a pool and what is
 * known of them, pick one. No libevent and no locks here: backend.c holds
 * its lock around these calls, and the unit tests call them directly.
 *
 * roundrobin is nginx's smooth weighted round robin: each round every
 * usable peer gains its weight, the one with the most wins and loses the
 * total, so weights 5, 1, 1 give a a b a c a a, never a burst of five.
 *
 * source is rendezvous hashing (highest random weight): every peer gets a
 * score from a hash of (client address, peer address) and the best score
 * wins. Removing a peer moves only the clients that were on it, adding
 * one moves only the clients it now wins, about 1/N of them, and a peer
 * that is down simply gives its clients to their second best. Weights use
 * the logarithmic method (score = weight / -ln(hash)), so that a peer
 * wins in proportion to its weight. Everything is integer arithmetic on
 * the addresses alone, with no seed: every process with the same list of
 * peers, on any machine, picks the same peer for the same client, which
 * keeps a fleet behind ECMP consistent.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "acceptd.h"

/* log2 results carry this many fractional bits. */
#define BALANCE_LOG_FRAC	32

static uint64_t	 balance_mix(uint64_t);
static uint64_t	 balance_neglog(uint64_t);
static int	 balance_better(const struct balance_peer *, uint64_t,
		     uint64_t, const struct balance_peer *, uint64_t,
		     uint64_t, int);
static int	 balance_smooth(struct balance_peer *, size_t,
		     const unsigned char *);

/* The finaliser of MurmurHash3: every input bit flips every output bit. */
static uint64_t
balance_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ba1ec0a40b8f53ULL;
	h ^= h >> 33;
	return (h);
}

/* A 64-bit hash of some bytes: FNV-1a, then mixed. */
uint64_t
balance_hash(const void *data, size_t len)
{
	const unsigned char	*p = data;
	uint64_t		 h = 0xcbf29ce484222325ULL;
	size_t			 i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return (balance_mix(h));
}

/*
 * The hash key of a client: its IP address without the port (an IPv4
 * address seen as IPv4-mapped IPv6 counts as IPv4). Returns -1 for a
 * client with no IP address (a unix socket).
 */
int
balance_client_key(const struct sockaddr *sa, socklen_t salen, uint64_t *key)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	if (sa == NULL)
		return (-1);
	if (sa->sa_family == AF_INET && salen >= sizeof *sin) {
		sin = (const struct sockaddr_in *)sa;
		*key = balance_hash(&sin->sin_addr, 4);
		return (0);
	}
	if (sa->sa_family == AF_INET6 && salen >= sizeof *sin6) {
		sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			*key = balance_hash(&sin6->sin6_addr.s6_addr[12], 4);
		else
			*key = balance_hash(&sin6->sin6_addr, 16);
		return (0);
	}
	return (-1);
}

/*
 * -log2(h / 2^53) for h in [1, 2^53], in fixed point with 32 fractional
 * bits: the integer part from the highest bit, the fraction one bit at a
 * time by squaring (exact, and the same on every machine).
 */
static uint64_t
balance_neglog(uint64_t h)
{
	unsigned __int128	 sq;
	uint64_t		 x, frac = 0;
	int			 msb, i;

	msb = 63 - __builtin_clzll(h);
	x = h << (62 - msb);		/* [1, 2) with 62 fractional bits */
	for (i = 0; i < BALANCE_LOG_FRAC; i++) {
		sq = (unsigned __int128)x * x;
		x = (uint64_t)(sq >> 62);
		frac <<= 1;
		if (x >= (1ULL << 63)) {
			x >>= 1;
			frac |= 1;
		}
	}
	return (((uint64_t)53 << BALANCE_LOG_FRAC) -
	    (((uint64_t)msb << BALANCE_LOG_FRAC) | frac));
}

/*
 * Does peer a (hash ha, -log nla) beat peer b for a client? With equal
 * weights the bigger hash wins; otherwise the smaller -ln(hash) / weight,
 * compared exactly by cross-multiplying. Ties go to the bigger hash.
 */
static int
balance_better(const struct balance_peer *a, uint64_t ha, uint64_t nla,
    const struct balance_peer *b, uint64_t hb, uint64_t nlb, int weighted)
{
	uint64_t	 sa, sb;

	if (weighted) {
		sa = nla * (uint64_t)b->weight;
		sb = nlb * (uint64_t)a->weight;
		if (sa != sb)
			return (sa < sb);
	}
	return (ha > hb);
}

/*
 * Rendezvous hashing: the usable peer with the best score for key, or -1
 * when none is usable. Only whether all weights are equal depends on the
 * peers that are not usable, so a peer going down moves only its clients.
 */
int
balance_source(const struct balance_peer *p, size_t n, uint64_t key)
{
	uint64_t	 h, nl = 0, best_h = 0, best_nl = 0;
	size_t		 i;
	int		 best = -1, weighted = 0;

	for (i = 1; i < n; i++) {
		if (p[i].weight != p[0].weight)
			weighted = 1;
	}
	for (i = 0; i < n; i++) {
		if (!p[i].usable)
			continue;
		h = balance_mix(key ^ p[i].hash);
		if (weighted)
			nl = balance_neglog((h >> 11) + 1);
		if (best == -1 || balance_better(&p[i], h, nl, &p[best], best_h,
		    best_nl, weighted)) {
			best = (int)i;
			best_h = h;
			best_nl = nl;
		}
	}
	return (best);
}

/*
 * Smooth weighted round robin over the usable peers (and, when only is
 * not NULL, only those it marks): each gains its weight, the one with the
 * most wins and gives back the total.
 */
static int
balance_smooth(struct balance_peer *p, size_t n, const unsigned char *only)
{
	size_t	 i;
	int	 best = -1, total = 0;

	for (i = 0; i < n; i++) {
		if (!p[i].usable || (only != NULL && !only[i]))
			continue;
		p[i].current += p[i].weight;
		total += p[i].weight;
		if (best == -1 || p[i].current > p[best].current)
			best = (int)i;
	}
	if (best != -1)
		p[best].current -= total;
	return (best);
}

/* Smooth weighted round robin; -1 when no peer is usable. */
int
balance_roundrobin(struct balance_peer *p, size_t n)
{
	return (balance_smooth(p, n, NULL));
}

/*
 * Weighted least connections: the usable peer with the fewest active
 * connections for its weight; peers that tie share by smooth weighted
 * round robin, as nginx does. -1 when no peer is usable.
 */
int
balance_leastconn(struct balance_peer *p, size_t n)
{
	unsigned char	 tie[BALANCE_MAX_PEERS];
	size_t		 i;
	int		 best = -1, ties = 0;

	if (n > BALANCE_MAX_PEERS)
		n = BALANCE_MAX_PEERS;
	for (i = 0; i < n; i++) {
		if (!p[i].usable)
			continue;
		if (best == -1 || p[i].active * (unsigned long long)
		    p[best].weight < p[best].active *
		    (unsigned long long)p[i].weight) {
			best = (int)i;
			ties = 1;
		} else if (p[i].active * (unsigned long long)p[best].weight ==
		    p[best].active * (unsigned long long)p[i].weight)
			ties++;
	}
	if (best == -1 || ties == 1)
		return (best);
	for (i = 0; i < n; i++) {
		tie[i] = p[i].usable && p[i].active *
		    (unsigned long long)p[best].weight == p[best].active *
		    (unsigned long long)p[i].weight;
	}
	return (balance_smooth(p, n, tie));
}

/* The first usable peer in order; -1 when none is. */
int
balance_first(const struct balance_peer *p, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (p[i].usable)
			return ((int)i);
	}
	return (-1);
}
