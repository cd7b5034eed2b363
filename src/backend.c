/*
 * Backend pools: the backends of one listener and the round-robin position
 * that spreads new connections over them. A pool keeps the configuration
 * snapshot it was built from alive, since its backends point into it.
 */
#include <sys/types.h>

#include <stdlib.h>

#include "acceptd.h"

/* Build the pool of a listener. */
struct backend_pool *
backend_pool_new(struct config *conf, const struct listener_conf *lc)
{
	struct backend_pool	*pool;
	size_t			 i;

	pool = xcalloc(1, sizeof *pool);
	pool->refcnt = 1;
	pool->conf = config_ref(conf);
	pool->lc = lc;
	pool->nbackends = lc->nbackends;
	pool->backends = xcalloc(lc->nbackends, sizeof *pool->backends);
	for (i = 0; i < lc->nbackends; i++) {
		pool->backends[i].conf = &lc->backends[i];
		pool->backends[i].text = lc->backends[i].addr.text;
	}
	return (pool);
}

/* Take a reference to a pool. */
struct backend_pool *
backend_pool_ref(struct backend_pool *pool)
{
	__atomic_add_fetch(&pool->refcnt, 1, __ATOMIC_RELAXED);
	return (pool);
}

/* Drop a reference; the last one frees the pool. */
void
backend_pool_unref(struct backend_pool *pool)
{
	if (pool == NULL)
		return;
	if (__atomic_sub_fetch(&pool->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	free(pool->backends);
	config_unref(pool->conf);
	free(pool);
}

/* Where a new connection starts in the round-robin order. */
size_t
backend_pool_first(struct backend_pool *pool)
{
	unsigned int	 n;

	if (pool->nbackends == 0)
		return (0);
	n = __atomic_fetch_add(&pool->next, 1, __ATOMIC_RELAXED);
	return (n % pool->nbackends);
}

/*
 * The backend for a connection's attempt-th try (0 first), going on in
 * round-robin order from where it started; NULL once every backend was
 * tried, so that a connection never waits twice on the same one.
 */
struct backend *
backend_pool_get(struct backend_pool *pool, size_t first, int attempt)
{
	if (attempt < 0 || (size_t)attempt >= pool->nbackends)
		return (NULL);
	return (&pool->backends[(first + (size_t)attempt) % pool->nbackends]);
}
