/*
 * Access control: the allow and deny lists of a listener, and the count of
 * connections per client address that max_connections_per_ip caps. Pure
 * (no libevent), so the unit tests link this file alone.
 */
#include <sys/types.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acceptd.h"

/* Buckets of a new table; it doubles past two entries per bucket. */
#define ACL_SOURCES_BUCKETS	64

/* One client address and its connections. */
struct acl_source {
	struct acl_source	*next;
	uint8_t			 key[16];	/* IPv4: IPv4-mapped */
	long long		 count;
};

/* Connections per client address; one lock, taken on accept and close. */
struct acl_sources {
	pthread_mutex_t		 lock;
	struct acl_source	**buckets;
	size_t			 nbuckets;
	size_t			 n;
	uint64_t		 seed;		/* hash: not guessable */
};

/* The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:0:0/96). */
static const uint8_t acl_v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

static int	 acl_key(const struct sockaddr *, uint8_t *);
static size_t	 acl_hash(const struct acl_sources *, const uint8_t *);
static struct acl_source **acl_find(struct acl_sources *, const uint8_t *);
static void	 acl_grow(struct acl_sources *);

/*
 * Is this client allowed by the listener's lists? deny is checked first:
 * a match there refuses. Then a non-empty allow must match. IPv4-mapped
 * IPv6 addresses are checked as IPv4; unix clients are not subject.
 * Returns 0 if allowed, -1 if refused.
 */
int
acl_check(const struct listener_conf *lc, const struct sockaddr *sa)
{
	size_t	 i;

	if (!acl_subject(sa))
		return (0);
	for (i = 0; i < lc->ndeny; i++) {
		if (cidr_match(&lc->deny[i], sa))
			return (-1);
	}
	if (lc->nallow == 0)
		return (0);
	for (i = 0; i < lc->nallow; i++) {
		if (cidr_match(&lc->allow[i], sa))
			return (0);
	}
	return (-1);
}

/* Is this an address that lists and per-address caps apply to? */
int
acl_subject(const struct sockaddr *sa)
{
	return (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

/* The table key of an address: 16 bytes, IPv4 written IPv4-mapped. */
static int
acl_key(const struct sockaddr *sa, uint8_t *key)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		memcpy(key, acl_v4mapped, sizeof acl_v4mapped);
		memcpy(key + 12, &sin->sin_addr, 4);
		return (0);
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		memcpy(key, &sin6->sin6_addr, 16);
		return (0);
	}
	return (-1);
}

/* Create an empty table of connections per address. */
struct acl_sources *
acl_sources_new(void)
{
	struct acl_sources	*t;

	t = xcalloc(1, sizeof *t);
	if (pthread_mutex_init(&t->lock, NULL) != 0)
		fatalx("cannot create a lock");
	t->nbuckets = ACL_SOURCES_BUCKETS;
	t->buckets = xcalloc(t->nbuckets, sizeof *t->buckets);
	if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) !=
	    (ssize_t)sizeof t->seed)
		t->seed = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ULL;
	return (t);
}

/* Free a table and what it counts. */
void
acl_sources_free(struct acl_sources *t)
{
	struct acl_source	*e, *next;
	size_t			 i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nbuckets; i++) {
		for (e = t->buckets[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->buckets);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Seeded FNV-1a over a key, then mixed, reduced to a bucket. */
static size_t
acl_hash(const struct acl_sources *t, const uint8_t *key)
{
	uint64_t	 h = 0xcbf29ce484222325ULL ^ t->seed;
	size_t		 i;

	for (i = 0; i < 16; i++) {
		h ^= key[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return ((size_t)(h & (t->nbuckets - 1)));
}

/* The link that points at a key's entry (or where it would go). */
static struct acl_source **
acl_find(struct acl_sources *t, const uint8_t *key)
{
	struct acl_source	**ep;

	ep = &t->buckets[acl_hash(t, key)];
	while (*ep != NULL && memcmp((*ep)->key, key, 16) != 0)
		ep = &(*ep)->next;
	return (ep);
}

/* Double the buckets; a failed allocation keeps the table as it is. */
static void
acl_grow(struct acl_sources *t)
{
	struct acl_source	**old = t->buckets, *e, *next, **ep;
	size_t			 i, n = t->nbuckets;

	if (n > SIZE_MAX / 2 / sizeof *old)
		return;
	if ((t->buckets = calloc(n * 2, sizeof *old)) == NULL) {
		t->buckets = old;
		return;
	}
	t->nbuckets = n * 2;
	for (i = 0; i < n; i++) {
		for (e = old[i]; e != NULL; e = next) {
			next = e->next;
			ep = &t->buckets[acl_hash(t, e->key)];
			e->next = *ep;
			*ep = e;
		}
	}
	free(old);
}

/*
 * Count one more connection from an address, unless it already has max
 * (0: no cap, nothing counted). Addresses that are not subject (unix
 * clients) always pass. Returns 1 if counted, 0 if passed without
 * counting, -1 if over the cap (or out of memory: refused too).
 */
int
acl_sources_take(struct acl_sources *t, const struct sockaddr *sa,
    long long max)
{
	struct acl_source	**ep, *e;
	uint8_t			 key[16];
	int			 rc = 1;

	if (max <= 0 || acl_key(sa, key) == -1)
		return (0);
	pthread_mutex_lock(&t->lock);
	ep = acl_find(t, key);
	if ((e = *ep) != NULL) {
		if (e->count >= max)
			rc = -1;
		else
			e->count++;
	} else if ((e = calloc(1, sizeof *e)) == NULL)
		rc = -1;
	else {
		memcpy(e->key, key, sizeof key);
		e->count = 1;
		*ep = e;
		if (++t->n > 2 * t->nbuckets)
			acl_grow(t);
	}
	pthread_mutex_unlock(&t->lock);
	return (rc);
}

/* Count one connection from an address less (acl_sources_take gave 1). */
void
acl_sources_release(struct acl_sources *t, const struct sockaddr *sa)
{
	struct acl_source	**ep, *e;
	uint8_t			 key[16];

	if (acl_key(sa, key) == -1)
		return;
	pthread_mutex_lock(&t->lock);
	ep = acl_find(t, key);
	if ((e = *ep) != NULL && --e->count <= 0) {
		*ep = e->next;
		free(e);
		t->n--;
	}
	pthread_mutex_unlock(&t->lock);
}

/* Connections counted for an address (for tests and statistics). */
long long
acl_sources_count(struct acl_sources *t, const struct sockaddr *sa)
{
	struct acl_source	*e;
	uint8_t			 key[16];
	long long		 n = 0;

	if (acl_key(sa, key) == -1)
		return (0);
	pthread_mutex_lock(&t->lock);
	if ((e = *acl_find(t, key)) != NULL)
		n = e->count;
	pthread_mutex_unlock(&t->lock);
	return (n);
}

/* Addresses in the table. */
size_t
acl_sources_size(struct acl_sources *t)
{
	size_t	 n;

	pthread_mutex_lock(&t->lock);
	n = t->n;
	pthread_mutex_unlock(&t->lock);
	return (n);
}
