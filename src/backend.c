/*
 * Backend pools: the endpoints of one listener, how a connection picks
 * one, and their health.
 *
 * A struct backend is one endpoint: a literal address, or one of the
 * addresses a host name resolves to. It carries the passive and active
 * health state and the counters, and the pools of one listener share it
 * across reloads (per address), so it is refcounted. A pool's endpoints
 * form a set that is replaced, never changed, when a name resolves to
 * other addresses. All of this state is under one lock, taken once per
 * connect, connect result and close (never on the byte path), so that
 * several worker threads may share the pools; health checks and DNS run
 * on the main loop.
 *
 * Passive health: a failed or timed-out connect marks the endpoint down
 * for BACKEND_BACKOFF_MIN_MS. Once that is over, one connection (the
 * trial) may try it again; if the trial fails too the back-off doubles,
 * up to BACKEND_BACKOFF_MAX_MS, and a success ends it. Errors that are
 * ours, not the backend's (no local port or descriptor, no memory), do
 * not count.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "acceptd.h"

/* A pool's endpoints at one time; replaced as a whole, never changed. */
struct backend_set {
	size_t			 n;
	struct backend		**b;
	unsigned char		*backup;
	struct balance_peer	*peers;		/* balance state of each */
};

/* A host-name entry of a pool, and its lookup in progress. */
struct backend_name {
	struct backend_pool	*pool;
	const struct backend_conf *bc;
	struct resolve_req	*req;
};

static pthread_mutex_t	 backend_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long backend_next_id;

static long long backend_realtime_ms(void);
static int	 backend_same_address(const struct sockaddr_storage *,
		     const struct sockaddr_storage *);
static struct backend *backend_new(const struct listener_conf *,
		     const struct backend_conf *,
		     const struct sockaddr_storage *, socklen_t);
static void	 backend_free(struct backend *);
static void	 backend_unref_locked(struct backend *);
static struct backend_set *backend_set_build(struct backend_pool *,
		     const struct backend_set *);
static void	 backend_set_free(struct backend_set *);
static int	 backend_set_equal(const struct backend_set *,
		     const struct backend_set *);
static int	 backend_set_has(const struct backend_set *,
		     const struct backend *);
static int	 backend_available(const struct backend *, long long);
static int	 backend_update_up(struct backend *);
static int	 backend_local_error(int);
static int	 backend_tried_has(const struct backend_tried *,
		     unsigned long long);
static int	 backend_tried_add(struct backend_tried *, unsigned long long);
static int	 backend_pick(struct backend_pool *, struct backend_set *,
		     const uint64_t *);
static void	 backend_pool_resolve_timer(evutil_socket_t, short, void *);
static void	 backend_pool_resolved(void *, int);

/* Are two socket addresses the same endpoint? */
static int
backend_same_address(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	return (sockaddr_equal((const struct sockaddr *)a, sizeof *a,
	    (const struct sockaddr *)b, sizeof *b));
}

/* Make an endpoint for an address of a backends entry; NULL: no memory. */
static struct backend *
backend_new(const struct listener_conf *lc, const struct backend_conf *bc,
    const struct sockaddr_storage *ss, socklen_t sslen)
{
	struct backend	*b;
	char		 buf[256];

	if ((b = calloc(1, sizeof *b)) == NULL)
		return (NULL);
	b->refcnt = 1;
	b->id = __atomic_add_fetch(&backend_next_id, 1, __ATOMIC_RELAXED);
	memcpy(&b->ss, ss, sslen);
	b->sslen = sslen;
	b->up = 1;
	b->listener = strdup(lc->name);
	if (bc->addr.kind == ADDRESS_NAME) {
		format_sockaddr((const struct sockaddr *)ss, sslen, buf,
		    sizeof buf);
		b->text = strdup(buf);
		b->name = strdup(bc->addr.text);
	} else
		b->text = strdup(bc->addr.text);
	if (b->listener == NULL || b->text == NULL ||
	    (bc->addr.kind == ADDRESS_NAME && b->name == NULL)) {
		backend_free(b);
		return (NULL);
	}
	return (b);
}

/* Free an endpoint nobody uses any more. */
static void
backend_free(struct backend *b)
{
	free(b->listener);
	free(b->text);
	free(b->name);
	free(b);
}

/* Drop a reference with the lock held, freeing an unused endpoint. */
static void
backend_unref_locked(struct backend *b)
{
	if (--b->refcnt == 0)
		backend_free(b);
}

/*
 * Build a pool's set from its configuration and the resolved names,
 * keeping the endpoints of prev (their state) where the address is the
 * same. Called with the lock held; NULL when out of memory.
 */
static struct backend_set *
backend_set_build(struct backend_pool *pool, const struct backend_set *prev)
{
	const struct listener_conf	*lc = pool->lc;
	const struct backend_conf	*bc;
	const struct sockaddr_storage	*addrs;
	struct sockaddr_storage		 ss;
	struct sockaddr_in		*sin;
	struct sockaddr_in6		*sin6;
	struct backend_set		*set;
	struct backend			*b;
	char				 canon[256];
	size_t				 i, j, k, n = 0, naddrs, max = 0;
	socklen_t			 sslen;

	for (i = 0; i < lc->nbackends; i++) {
		if (lc->backends[i].addr.kind == ADDRESS_NAME)
			max += resolve_lookup(lc->backends[i].addr.host, NULL);
		else
			max++;
	}
	if (max > BALANCE_MAX_PEERS)
		max = BALANCE_MAX_PEERS;
	if ((set = calloc(1, sizeof *set)) == NULL)
		return (NULL);
	if (max > 0) {
		set->b = calloc(max, sizeof *set->b);
		set->backup = calloc(max, sizeof *set->backup);
		set->peers = calloc(max, sizeof *set->peers);
		if (set->b == NULL || set->backup == NULL ||
		    set->peers == NULL)
			goto fail;
	}
	for (i = 0; i < lc->nbackends; i++) {
		bc = &lc->backends[i];
		if (bc->addr.kind == ADDRESS_NAME)
			naddrs = resolve_lookup(bc->addr.host, &addrs);
		else {
			naddrs = 1;
			addrs = &bc->addr.ss;
		}
		for (j = 0; j < naddrs && n < max; j++) {
			ss = addrs[j];
			sslen = bc->addr.sslen;
			if (bc->addr.kind == ADDRESS_NAME) {
				if (ss.ss_family == AF_INET) {
					sin = (struct sockaddr_in *)&ss;
					sin->sin_port = htons(bc->addr.port);
					sslen = sizeof *sin;
				} else {
					sin6 = (struct sockaddr_in6 *)&ss;
					sin6->sin6_port = htons(bc->addr.port);
					sslen = sizeof *sin6;
				}
			}
			for (k = 0; k < n; k++) {
				if (backend_same_address(&set->b[k]->ss, &ss))
					break;
			}
			if (k != n)
				continue;	/* listed twice: first wins */
			b = NULL;
			for (k = 0; prev != NULL && k < prev->n; k++) {
				if (backend_same_address(&prev->b[k]->ss,
				    &ss)) {
					b = prev->b[k];
					b->refcnt++;
					break;
				}
			}
			if (b == NULL &&
			    (b = backend_new(lc, bc, &ss, sslen)) == NULL)
				goto fail;
			set->b[n] = b;
			set->backup[n] = bc->backup != 0;
			set->peers[n].weight = bc->weight;
			format_sockaddr((struct sockaddr *)&b->ss, b->sslen,
			    canon, sizeof canon);
			set->peers[n].hash = balance_hash(canon, strlen(canon));
			set->n = ++n;
		}
	}
	return (set);

 fail:
	for (k = 0; k < set->n; k++)
		backend_unref_locked(set->b[k]);
	backend_set_free(set);
	return (NULL);
}

/* Free a set whose endpoints were already released. */
static void
backend_set_free(struct backend_set *set)
{
	if (set == NULL)
		return;
	free(set->b);
	free(set->backup);
	free(set->peers);
	free(set);
}

/* Do two sets hold the same endpoints, in the same order and roles? */
static int
backend_set_equal(const struct backend_set *a, const struct backend_set *b)
{
	size_t	 i;

	if (a->n != b->n)
		return (0);
	for (i = 0; i < a->n; i++) {
		if (a->b[i] != b->b[i] || a->backup[i] != b->backup[i] ||
		    a->peers[i].weight != b->peers[i].weight)
			return (0);
	}
	return (1);
}

/* Is this endpoint in the set? */
static int
backend_set_has(const struct backend_set *set, const struct backend *b)
{
	size_t	 i;

	for (i = 0; i < set->n; i++) {
		if (set->b[i] == b)
			return (1);
	}
	return (0);
}

/*
 * Build the pool of a listener, with the addresses its host names last
 * resolved to (resolve_config first). The pool does not check health or
 * resolve names again until backend_pool_start.
 */
struct backend_pool *
backend_pool_new(struct config *conf, const struct listener_conf *lc)
{
	struct backend_pool	*pool;
	size_t			 i;

	pool = xcalloc(1, sizeof *pool);
	pool->refcnt = 1;
	pool->conf = config_ref(conf);
	pool->lc = lc;
	pool->stats = stats_listener_get(lc->name);
	for (i = 0; i < lc->nbackends; i++) {
		if (lc->backends[i].addr.kind == ADDRESS_NAME)
			pool->nnames++;
	}
	if (pool->nnames > 0) {
		pool->names = xcalloc(pool->nnames, sizeof *pool->names);
		pool->nnames = 0;
		for (i = 0; i < lc->nbackends; i++) {
			if (lc->backends[i].addr.kind != ADDRESS_NAME)
				continue;
			pool->names[pool->nnames].pool = pool;
			pool->names[pool->nnames++].bc = &lc->backends[i];
		}
	}
	pthread_mutex_lock(&backend_lock);
	pool->set = backend_set_build(pool, NULL);
	pthread_mutex_unlock(&backend_lock);
	if (pool->set == NULL)
		fatalx("listener '%s': out of memory", lc->name);
	return (pool);
}

/* Take a reference to a pool. */
struct backend_pool *
backend_pool_ref(struct backend_pool *pool)
{
	__atomic_add_fetch(&pool->refcnt, 1, __ATOMIC_RELAXED);
	return (pool);
}

/*
 * Drop a reference; the last one frees the pool. A started pool must be
 * stopped on the main loop first (sessions may drop the last reference).
 */
void
backend_pool_unref(struct backend_pool *pool)
{
	size_t	 i;

	if (pool == NULL)
		return;
	if (__atomic_sub_fetch(&pool->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (pool->base != NULL)
		backend_pool_stop(pool);
	pthread_mutex_lock(&backend_lock);
	for (i = 0; i < pool->set->n; i++)
		backend_unref_locked(pool->set->b[i]);
	pthread_mutex_unlock(&backend_lock);
	backend_set_free(pool->set);
	free(pool->names);
	config_unref(pool->conf);
	free(pool);
}

/*
 * Start the pool's work on the main loop: active health checks when
 * health_check is set, and resolving its host names again every
 * resolve_interval. Starting a started pool does nothing.
 */
int
backend_pool_start(struct backend_pool *pool, struct event_base *base)
{
	const struct listener_conf	*lc = pool->lc;
	struct timeval			 tv;
	size_t				 i;

	if (pool->base != NULL)
		return (0);
	pool->base = base;
	if (pool->nnames > 0) {
		pool->resolve_timer = event_new(base, -1, EV_PERSIST,
		    backend_pool_resolve_timer, pool);
		tv.tv_sec = lc->resolve_interval_ms / 1000;
		tv.tv_usec = (lc->resolve_interval_ms % 1000) * 1000;
		if (pool->resolve_timer == NULL ||
		    event_add(pool->resolve_timer, &tv) == -1) {
			log_warnx("listener '%s': cannot schedule name "
			    "resolution", lc->name);
			backend_pool_stop(pool);
			return (-1);
		}
	}
	if (lc->health.enabled) {
		for (i = 0; i < pool->set->n; i++)
			health_start(pool, pool->set->b[i], base);
	}
	return (0);
}

/*
 * Stop the pool's health checks and name resolution; its endpoints keep
 * their state, and connections may still use the pool.
 */
void
backend_pool_stop(struct backend_pool *pool)
{
	size_t	 i;

	if (pool->base == NULL)
		return;
	if (pool->resolve_timer != NULL) {
		event_free(pool->resolve_timer);
		pool->resolve_timer = NULL;
	}
	for (i = 0; i < pool->nnames; i++) {
		if (pool->names[i].req != NULL) {
			resolve_cancel(pool->names[i].req);
			pool->names[i].req = NULL;
		}
	}
	for (i = 0; i < pool->set->n; i++)
		health_stop(pool->set->b[i]);
	pool->base = NULL;
}

/*
 * A reload: the new pool of a listener takes over the endpoints of the
 * old one that have the same address, with their health state and
 * counters, so that nothing is marked up or down by a reload. The old
 * pool stops (it only serves the connections it has); the new one starts
 * on the old one's loop if the old one was started.
 */
void
backend_pool_inherit(struct backend_pool *new, struct backend_pool *old)
{
	struct event_base	*base = old->base, *nbase = new->base;
	struct backend_set	*set = new->set, *prev = old->set;
	size_t			 i, j;

	backend_pool_stop(old);
	backend_pool_stop(new);
	if (base == NULL)
		base = nbase;
	pthread_mutex_lock(&backend_lock);
	for (i = 0; i < set->n; i++) {
		for (j = 0; j < prev->n; j++) {
			if (backend_same_address(&set->b[i]->ss,
			    &prev->b[j]->ss))
				break;
		}
		if (j == prev->n || set->b[i] == prev->b[j])
			continue;
		backend_unref_locked(set->b[i]);
		set->b[i] = prev->b[j];
		set->b[i]->refcnt++;
	}
	pthread_mutex_unlock(&backend_lock);
	if (base != NULL)
		backend_pool_start(new, base);
}

/*
 * Rebuild the pool's set from what its names resolve to now, keeping the
 * endpoints that did not change; health checks follow the endpoints.
 */
void
backend_pool_refresh(struct backend_pool *pool)
{
	struct backend_set	*set, *old;
	size_t			 i;

	pthread_mutex_lock(&backend_lock);
	old = pool->set;
	set = backend_set_build(pool, old);
	if (set != NULL && backend_set_equal(old, set)) {
		for (i = 0; i < set->n; i++)
			backend_unref_locked(set->b[i]);
		backend_set_free(set);
		set = NULL;
	} else if (set != NULL)
		pool->set = set;
	pthread_mutex_unlock(&backend_lock);
	if (set == NULL)
		return;	/* no change, or no memory: keep what there is */

	/* Probes live on the main loop, as this does. */
	for (i = 0; i < old->n; i++) {
		if (!backend_set_has(set, old->b[i]))
			health_stop(old->b[i]);
	}
	if (pool->base != NULL && pool->lc->health.enabled) {
		for (i = 0; i < set->n; i++)
			health_start(pool, set->b[i], pool->base);
	}
	pthread_mutex_lock(&backend_lock);
	for (i = 0; i < old->n; i++)
		backend_unref_locked(old->b[i]);
	pthread_mutex_unlock(&backend_lock);
	backend_set_free(old);
}

/* Time to resolve the pool's names again. */
static void
backend_pool_resolve_timer(evutil_socket_t fd, short events, void *arg)
{
	struct backend_pool	*pool = arg;
	struct backend_name	*bn;
	size_t			 i;

	for (i = 0; i < pool->nnames; i++) {
		bn = &pool->names[i];
		if (bn->req != NULL)
			continue;	/* the last one is still going */
		bn->req = resolve_host(bn->bc->addr.host,
		    backend_pool_resolved, bn);
	}
}

/* A name of the pool was looked up; on success, follow the answer. */
static void
backend_pool_resolved(void *arg, int ok)
{
	struct backend_name	*bn = arg;

	bn->req = NULL;
	if (ok)
		backend_pool_refresh(bn->pool);
}

/*
 * May an endpoint take a new connection: not down by health checks, and
 * not in a passive back-off, unless that is over and nobody is already
 * trying it?
 */
static int
backend_available(const struct backend *b, long long now)
{
	if (b->check_down || b->admin_down)
		return (0);
	if (b->retry_ms == 0)
		return (1);
	return (now >= b->retry_ms && b->trial == NULL);
}

/* Recompute whether an endpoint is up; 1 if that changed. */
static int
backend_update_up(struct backend *b)
{
	int	 up = !b->check_down && b->retry_ms == 0;

	if (up == b->up)
		return (0);
	b->up = up;
	return (1);
}

/* Is a connect error ours rather than the backend's? */
static int
backend_local_error(int err)
{
	switch (err) {
	case EADDRNOTAVAIL:
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
		return (1);
	}
	return (0);
}

/* Did this connection try that endpoint already? */
static int
backend_tried_has(const struct backend_tried *t, unsigned long long id)
{
	const unsigned long long	*v;
	size_t				 i;

	v = t->ids != NULL ? t->ids : t->inline_ids;
	for (i = 0; i < t->n; i++) {
		if (v[i] == id)
			return (1);
	}
	return (0);
}

/* Remember that this connection tried an endpoint; -1: no memory. */
static int
backend_tried_add(struct backend_tried *t, unsigned long long id)
{
	unsigned long long	*v;
	size_t			 cap;

	if (t->ids == NULL && t->n < BACKEND_TRIED_INLINE) {
		t->inline_ids[t->n++] = id;
		return (0);
	}
	if (t->ids == NULL || t->n == t->cap) {
		cap = t->cap == 0 ? 4 * BACKEND_TRIED_INLINE : 2 * t->cap;
		if ((v = reallocarray(t->ids, cap, sizeof *v)) == NULL)
			return (-1);
		if (t->ids == NULL)
			memcpy(v, t->inline_ids, sizeof t->inline_ids);
		t->ids = v;
		t->cap = cap;
	}
	t->ids[t->n++] = id;
	return (0);
}

/* Forget what a connection tried. */
void
backend_tried_free(struct backend_tried *t)
{
	free(t->ids);
	t->ids = NULL;
	t->n = t->cap = 0;
}

/*
 * Run the pool's algorithm over the set, where usable is already marked;
 * key is the client's hash key for source, NULL if it has no address (a
 * unix client), which then goes round robin.
 */
static int
backend_pick(struct backend_pool *pool, struct backend_set *set,
    const uint64_t *key)
{
	switch (pool->lc->balance) {
	case BALANCE_LEASTCONN:
		return (balance_leastconn(set->peers, set->n));
	case BALANCE_SOURCE:
		if (key != NULL)
			return (balance_source(set->peers, set->n, *key));
		break;
	case BALANCE_FIRST:
		return (balance_first(set->peers, set->n));
	case BALANCE_ROUNDROBIN:
		break;
	}
	return (balance_roundrobin(set->peers, set->n));
}

/*
 * Choose the endpoint for a connection's next attempt: by the listener's
 * balance, among the endpoints that are available and that it did not
 * try yet, primaries first and backups only when no primary is left.
 * Returns a reference (and counts the connection as active on it), to be
 * given back with backend_release; NULL when there is none to try. owner
 * stands for the connection: it may be the trial after a back-off.
 */
struct backend *
backend_pool_choose(struct backend_pool *pool, const struct sockaddr *client,
    socklen_t clientlen, struct backend_tried *tried, const void *owner)
{
	struct backend_set	*set;
	struct backend		*b = NULL;
	uint64_t		 key;
	long long		 now = stats_now_ms();
	size_t			 i;
	int			 backup, pick, has_key = 0;

	if (pool->lc->balance == BALANCE_SOURCE &&
	    balance_client_key(client, clientlen, &key) == 0)
		has_key = 1;
	pthread_mutex_lock(&backend_lock);
	set = pool->set;
	for (backup = 0; backup <= 1 && b == NULL; backup++) {
		for (i = 0; i < set->n; i++) {
			set->peers[i].usable = set->backup[i] == backup &&
			    backend_available(set->b[i], now) &&
			    !backend_tried_has(tried, set->b[i]->id);
			set->peers[i].active = set->b[i]->active;
		}
		pick = backend_pick(pool, set, has_key ? &key : NULL);
		if (pick != -1)
			b = set->b[pick];
	}
	if (b != NULL) {
		if (b->retry_ms != 0)
			b->trial = owner;
		b->refcnt++;
		b->active++;
		b->total++;
	}
	pthread_mutex_unlock(&backend_lock);
	if (b != NULL && backend_tried_add(tried, b->id) == -1)
		log_debug("%s: cannot remember a tried backend", __func__);
	return (b);
}

/* A connect to the endpoint succeeded: any passive back-off is over. */
void
backend_connected(struct backend *b, const void *owner)
{
	int	 changed;

	pthread_mutex_lock(&backend_lock);
	b->retry_ms = 0;
	b->backoff_ms = 0;
	if (b->trial == owner)
		b->trial = NULL;
	changed = backend_update_up(b);
	pthread_mutex_unlock(&backend_lock);
	if (changed)
		log_notice("listener '%s': backend %s is up: a connection "
		    "succeeded", b->listener, b->text);
}

/*
 * A connect to the endpoint failed (err, or timed out). The first failure
 * marks it down for the shortest back-off; a failed trial after a
 * back-off doubles it. A failure of a connection that started before the
 * endpoint went down changes nothing, so that a burst of connections to a
 * dead backend counts once.
 */
void
backend_failed(struct backend *b, int err, int timedout, const void *owner)
{
	char		 t[32];
	long long	 backoff = 0;
	int		 changed;

	if (!timedout && backend_local_error(err)) {
		pthread_mutex_lock(&backend_lock);
		if (b->trial == owner)
			b->trial = NULL;
		pthread_mutex_unlock(&backend_lock);
		log_debug("%s: %s: %s: not the backend's failure", __func__,
		    b->text, strerror(err));
		return;
	}
	pthread_mutex_lock(&backend_lock);
	b->failures++;
	if (b->retry_ms == 0)
		backoff = BACKEND_BACKOFF_MIN_MS;
	else if (b->trial == owner) {
		backoff = 2 * b->backoff_ms;
		if (backoff > BACKEND_BACKOFF_MAX_MS)
			backoff = BACKEND_BACKOFF_MAX_MS;
		b->trial = NULL;
	}
	if (backoff != 0) {
		b->backoff_ms = backoff;
		b->retry_ms = stats_now_ms() + backoff;
	}
	changed = backend_update_up(b);
	pthread_mutex_unlock(&backend_lock);
	if (changed) {
		log_warnx("listener '%s': backend %s is down: connect %s%s; "
		    "next try in %s", b->listener, b->text, timedout ?
		    "timed out" : "failed: ", timedout ? "" : strerror(err),
		    format_duration(backoff, t, sizeof t));
	} else if (backoff != 0) {
		log_debug("%s: %s still failing: %s; next try in %s",
		    __func__, b->text, timedout ? "timed out" : strerror(err),
		    format_duration(backoff, t, sizeof t));
	}
}

/*
 * A connection is done with the endpoint (its attempt failed, or it
 * closed): give back its reference. A trial that ends without a result
 * lets another connection try.
 */
void
backend_release(struct backend *b, const void *owner)
{
	int	 last;

	pthread_mutex_lock(&backend_lock);
	if (b->active > 0)
		b->active--;
	if (b->trial == owner)
		b->trial = NULL;
	last = --b->refcnt == 0;
	pthread_mutex_unlock(&backend_lock);
	if (last)
		backend_free(b);
}

/*
 * The result of an active health check: rise passed checks in a row
 * bring a down endpoint up, fall failed ones take an up endpoint down. A
 * passed check also ends a passive back-off.
 */
void
backend_check_done(struct backend_pool *pool, struct backend *b, int ok,
    const char *why)
{
	const struct health_conf	*hc = &pool->lc->health;
	int				 changed, n;

	pthread_mutex_lock(&backend_lock);
	b->last_check_ms = backend_realtime_ms();	/* show backends */
	b->last_check_ok = ok;
	if (ok) {
		b->check_failed = 0;
		if (b->check_ok < hc->rise)
			b->check_ok++;
		if (b->check_down && b->check_ok >= hc->rise)
			b->check_down = 0;
		if (b->trial == NULL) {
			b->retry_ms = 0;
			b->backoff_ms = 0;
		}
	} else {
		b->check_ok = 0;
		if (b->check_failed < hc->fall)
			b->check_failed++;
		if (!b->check_down && b->check_failed >= hc->fall)
			b->check_down = 1;
	}
	n = ok ? b->check_ok : b->check_failed;
	changed = backend_update_up(b);
	pthread_mutex_unlock(&backend_lock);
	if (!changed) {
		log_debug("%s: %s: check %s%s%s", __func__, b->text,
		    ok ? "passed" : "failed", why != NULL ? ": " : "",
		    why != NULL ? why : "");
		return;
	}
	if (ok)
		log_notice("listener '%s': backend %s is up: %d health "
		    "check%s passed", b->listener, b->text, n,
		    n == 1 ? "" : "s");
	else
		log_warnx("listener '%s': backend %s is down: %d health "
		    "check%s failed (%s)", b->listener, b->text, n,
		    n == 1 ? "" : "s", why != NULL ? why : "failed");
}

/* How many of the pool's endpoints are down now. */
size_t
backend_pool_down(struct backend_pool *pool)
{
	size_t	 i, n = 0;

	pthread_mutex_lock(&backend_lock);
	for (i = 0; i < pool->set->n; i++) {
		if (!pool->set->b[i]->up)
			n++;
	}
	pthread_mutex_unlock(&backend_lock);
	return (n);
}

/* Milliseconds on the wall clock (the time of the last check). */
static long long
backend_realtime_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/*
 * Give each endpoint of the pool, with whether it is a backup, to fn,
 * with the lock held (fn only copies): stats.c reads them this way.
 */
void
backend_pool_walk(struct backend_pool *pool,
    void (*fn)(const struct backend *, int, void *), void *arg)
{
	size_t	 i;

	pthread_mutex_lock(&backend_lock);
	for (i = 0; i < pool->set->n; i++)
		fn(pool->set->b[i], pool->set->backup[i], arg);
	pthread_mutex_unlock(&backend_lock);
}

/*
 * acceptctl disable (down) or enable: the endpoints of the pool at this
 * address, or that came from this host name entry, take no new
 * connection (open ones go on), or take them again. The flag stays with
 * the endpoint across reloads. Returns how many endpoints matched.
 */
size_t
backend_pool_admin(struct backend_pool *pool, const char *address, int down)
{
	struct backend	*b;
	size_t		 i, n = 0;

	pthread_mutex_lock(&backend_lock);
	for (i = 0; i < pool->set->n; i++) {
		b = pool->set->b[i];
		if (strcmp(b->text, address) != 0 &&
		    (b->name == NULL || strcmp(b->name, address) != 0))
			continue;
		b->admin_down = down;
		n++;
	}
	pthread_mutex_unlock(&backend_lock);
	return (n);
}
