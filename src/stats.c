/*
 * Statistics: the counters of each listener, and the snapshot that
 * metrics.c and control.c read.
 *
 * Counters go by listener name, so that a listener kept or renamed back
 * by a reload keeps counting where it was; an entry lives until exit (a
 * name's few hundred bytes), so that the data path holds plain pointers
 * and never takes a lock. Every worker updates them with relaxed atomics,
 * once per accept, connect and close, and per relayed read for bytes.
 *
 * The snapshot runs on the main loop. It adds to those counters what the
 * daemon runs now (its view: listening sockets, backend pools, workers,
 * reloads) and what the backends hold under their own lock.
 */
#include <sys/types.h>
#include <sys/queue.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acceptd.h"

/* The counters of one listener name. */
struct stats_listener {
	TAILQ_ENTRY(stats_listener) entry;
	char			*name;
	long long		 active;
	unsigned long long	 ends[END_MAX];
	unsigned long long	 bytes_in;
	unsigned long long	 bytes_out;
	unsigned long long	 buckets[STATS_BUCKETS + 1];
	unsigned long long	 connect_count;
	unsigned long long	 connect_sum_us;
	unsigned long long	 cap_pauses;
	unsigned long long	 backoffs;
};
TAILQ_HEAD(stats_listener_list, stats_listener);

/* Where the endpoints of one pool are copied to. */
struct stats_walk {
	struct stats_snapshot	*snap;
	int			 health;	/* the pool has checks */
};

/* Upper bounds of the connect duration buckets, in microseconds. */
static const long long stats_bounds_us[STATS_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000
};

static pthread_mutex_t	 stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats_listener_list stats_all =
    TAILQ_HEAD_INITIALIZER(stats_all);
static long long	 stats_started_ms;	/* wall clock, at stats_init */

static long long stats_realtime_ms(void);
static void	 stats_add(unsigned long long *, unsigned long long);
static unsigned long long stats_load(const unsigned long long *);
static int	 stats_configured(const struct config *, const char *);
static int	 stats_copy_listener(struct stats_snapshot *,
		     const struct stats_listener *, const struct stats_view *);
static void	 stats_copy_backend(const struct backend *, int, void *);
static void	 stats_grow_backends(struct stats_snapshot *);

/* Milliseconds on the wall clock. */
static long long
stats_realtime_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Milliseconds on the monotonic clock, for timers and back-offs. */
long long
stats_now_ms(void)
{
	return (stats_now_us() / 1000);
}

/* Microseconds on the monotonic clock, for connect durations. */
long long
stats_now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/* Add to a counter that other threads may update too. */
static void
stats_add(unsigned long long *c, unsigned long long n)
{
	__atomic_add_fetch(c, n, __ATOMIC_RELAXED);
}

/* Read a counter that other threads may update. */
static unsigned long long
stats_load(const unsigned long long *c)
{
	return (__atomic_load_n(c, __ATOMIC_RELAXED));
}

/* Remember when the process started (for the start time metric). */
void
stats_init(void)
{
	if (stats_started_ms == 0)
		stats_started_ms = stats_realtime_ms();
}

/* Free every listener's counters, at exit once no session is left. */
void
stats_shutdown(void)
{
	struct stats_listener	*st;

	pthread_mutex_lock(&stats_lock);
	while ((st = TAILQ_FIRST(&stats_all)) != NULL) {
		TAILQ_REMOVE(&stats_all, st, entry);
		free(st->name);
		free(st);
	}
	pthread_mutex_unlock(&stats_lock);
}

/*
 * The counters of a listener name, created on first use; they live until
 * stats_shutdown, so the pointer may be kept without a reference.
 */
struct stats_listener *
stats_listener_get(const char *name)
{
	struct stats_listener	*st;

	pthread_mutex_lock(&stats_lock);
	TAILQ_FOREACH(st, &stats_all, entry) {
		if (strcmp(st->name, name) == 0)
			break;
	}
	if (st == NULL) {
		st = xcalloc(1, sizeof *st);
		st->name = xstrdup(name);
		TAILQ_INSERT_TAIL(&stats_all, st, entry);
	}
	pthread_mutex_unlock(&stats_lock);
	return (st);
}

/* A connection was accepted. */
void
stats_opened(struct stats_listener *st)
{
	if (st != NULL)
		__atomic_add_fetch(&st->active, 1, __ATOMIC_RELAXED);
}

/* A connection reached its backend, us microseconds after it started. */
void
stats_connected(struct stats_listener *st, long long us)
{
	size_t	 i;

	if (st == NULL)
		return;
	if (us < 0)
		us = 0;
	for (i = 0; i < STATS_BUCKETS; i++) {
		if (us <= stats_bounds_us[i])
			break;
	}
	stats_add(&st->buckets[i], 1);
	stats_add(&st->connect_sum_us, (unsigned long long)us);
	stats_add(&st->connect_count, 1);
}

/* Bytes were relayed: in from a client, out from a backend to a client. */
void
stats_bytes(struct stats_listener *st, unsigned long long in,
    unsigned long long out)
{
	if (st == NULL)
		return;
	if (in != 0)
		stats_add(&st->bytes_in, in);
	if (out != 0)
		stats_add(&st->bytes_out, out);
}

/* A connection closed for this reason. */
void
stats_closed(struct stats_listener *st, enum end_reason why)
{
	if (st == NULL)
		return;
	__atomic_sub_fetch(&st->active, 1, __ATOMIC_RELAXED);
	if (why < END_MAX)
		stats_add(&st->ends[why], 1);
}

/* A listening socket stopped accepting at a connection cap. */
void
stats_cap_paused(struct stats_listener *st)
{
	if (st != NULL)
		stats_add(&st->cap_pauses, 1);
}

/* A listening socket began an accept back-off (EMFILE, ...). */
void
stats_backoff(struct stats_listener *st)
{
	if (st != NULL)
		stats_add(&st->backoffs, 1);
}

/* The upper bound of a connect duration bucket, in seconds. */
double
stats_bucket_bound(size_t i)
{
	if (i >= STATS_BUCKETS)
		return (0);
	return ((double)stats_bounds_us[i] / 1e6);
}

/* Is a listener of that name in the configuration? */
static int
stats_configured(const struct config *conf, const char *name)
{
	size_t	 i;

	for (i = 0; conf != NULL && i < conf->nlisteners; i++) {
		if (strcmp(conf->listeners[i].name, name) == 0)
			return (1);
	}
	return (0);
}

/*
 * Add a listener's counters to the snapshot, with the state of its
 * listening sockets; -1 when out of memory.
 */
static int
stats_copy_listener(struct stats_snapshot *snap,
    const struct stats_listener *st, const struct stats_view *v)
{
	struct stats_listener_snap	*ls;
	struct listener			*l;
	size_t				 i;

	ls = &snap->listeners[snap->nlisteners];
	memset(ls, 0, sizeof *ls);
	if ((ls->name = strdup(st->name)) == NULL)
		return (-1);
	snap->nlisteners++;
	ls->configured = stats_configured(v->conf, st->name);
	ls->active = __atomic_load_n(&st->active, __ATOMIC_RELAXED);
	for (i = 0; i < END_MAX; i++)
		ls->ends[i] = stats_load(&st->ends[i]);
	ls->bytes_in = stats_load(&st->bytes_in);
	ls->bytes_out = stats_load(&st->bytes_out);
	for (i = 0; i <= STATS_BUCKETS; i++)
		ls->buckets[i] = stats_load(&st->buckets[i]);
	ls->connect_count = stats_load(&st->connect_count);
	ls->connect_sum_us = stats_load(&st->connect_sum_us);
	ls->cap_pauses = stats_load(&st->cap_pauses);
	ls->backoffs = stats_load(&st->backoffs);
	if (v->listeners == NULL)
		return (0);
	TAILQ_FOREACH(l, v->listeners, entry) {
		if (l->lc == NULL || strcmp(l->lc->name, st->name) != 0)
			continue;
		ls->sockets++;
		if (l->capped)
			ls->capped++;
		if (l->paused)
			ls->paused++;
	}
	return (0);
}

/* Make room for one more backend in the snapshot (failed: oom is set). */
static void
stats_grow_backends(struct stats_snapshot *snap)
{
	struct stats_backend_snap	*v;
	size_t				 cap;

	if (snap->nbackends < snap->backends_cap)
		return;
	cap = snap->backends_cap == 0 ? 16 : snap->backends_cap * 2;
	v = reallocarray(snap->backends, cap, sizeof *v);
	if (v == NULL) {
		snap->oom = 1;
		return;
	}
	snap->backends = v;
	snap->backends_cap = cap;
}

/* Copy one endpoint's state (called with the backend lock held). */
static void
stats_copy_backend(const struct backend *b, int backup, void *arg)
{
	struct stats_walk		*w = arg;
	struct stats_snapshot		*snap = w->snap;
	struct stats_backend_snap	*bs;

	stats_grow_backends(snap);
	if (snap->oom)
		return;
	bs = &snap->backends[snap->nbackends];
	memset(bs, 0, sizeof *bs);
	bs->listener = strdup(b->listener);
	bs->address = strdup(b->text);
	if (b->name != NULL)
		bs->name = strdup(b->name);
	if (bs->listener == NULL || bs->address == NULL ||
	    (b->name != NULL && bs->name == NULL)) {
		free(bs->listener);
		free(bs->address);
		free(bs->name);
		snap->oom = 1;
		return;
	}
	snap->nbackends++;
	bs->backup = backup;
	bs->up = b->up;
	bs->admin_down = b->admin_down;
	bs->checked = w->health;
	bs->last_check_ms = b->last_check_ms;
	bs->last_check_ok = b->last_check_ok;
	bs->active = b->active;
	bs->total = b->total;
	bs->failures = b->failures;
}

/*
 * Take a snapshot of every counter and state, on the main loop. NULL when
 * out of memory.
 */
struct stats_snapshot *
stats_snapshot(const struct stats_source *src)
{
	struct stats_snapshot	*snap;
	struct stats_listener	*st;
	struct stats_view	 v;
	struct stats_walk	 w;
	size_t			 i, n;

	memset(&v, 0, sizeof v);
	src->view(src->arg, &v);
	if ((snap = calloc(1, sizeof *snap)) == NULL)
		return (NULL);
	snap->now_ms = stats_realtime_ms();
	snap->start_ms = stats_started_ms;
	snap->cap = limits_cap();
	snap->reloads_ok = v.reloads_ok;
	snap->reloads_failed = v.reloads_failed;
	snap->log_dropped = log_dropped();
	if (v.nworkers > 0 && (snap->workers = calloc(v.nworkers,
	    sizeof *snap->workers)) == NULL) {
		free(snap);
		return (NULL);
	}
	snap->nworkers = v.nworkers;
	for (i = 0; i < v.nworkers; i++) {
		/* Counted by the worker threads. */
		snap->workers[i].active = __atomic_load_n(
		    &v.workers[i]->active, __ATOMIC_RELAXED);
		snap->workers[i].accepted = __atomic_load_n(
		    &v.workers[i]->accepted, __ATOMIC_RELAXED);
		snap->active += (long long)snap->workers[i].active;
	}

	pthread_mutex_lock(&stats_lock);
	n = 0;
	TAILQ_FOREACH(st, &stats_all, entry)
		n++;
	if (n > 0 && (snap->listeners = calloc(n, sizeof
	    *snap->listeners)) == NULL)
		snap->oom = 1;
	TAILQ_FOREACH(st, &stats_all, entry) {
		if (snap->oom)
			break;
		/* Gone from the configuration and idle: not shown. */
		if (!stats_configured(v.conf, st->name) &&
		    __atomic_load_n(&st->active, __ATOMIC_RELAXED) == 0)
			continue;
		if (stats_copy_listener(snap, st, &v) == -1)
			snap->oom = 1;
	}
	pthread_mutex_unlock(&stats_lock);

	w.snap = snap;
	for (i = 0; i < v.npools && !snap->oom; i++) {
		w.health = v.pools[i]->lc->health.enabled;
		backend_pool_walk(v.pools[i], stats_copy_backend, &w);
	}
	if (snap->oom) {
		stats_snapshot_free(snap);
		return (NULL);
	}
	return (snap);
}

/* Free a snapshot. */
void
stats_snapshot_free(struct stats_snapshot *snap)
{
	size_t	 i;

	if (snap == NULL)
		return;
	for (i = 0; i < snap->nlisteners; i++)
		free(snap->listeners[i].name);
	for (i = 0; i < snap->nbackends; i++) {
		free(snap->backends[i].listener);
		free(snap->backends[i].address);
		free(snap->backends[i].name);
	}
	free(snap->listeners);
	free(snap->backends);
	free(snap->workers);
	free(snap);
}

/* Give every open connection of every worker to fn (main loop). */
void
stats_conns(const struct stats_source *src,
    void (*fn)(const struct session_info *, void *), void *arg)
{
	struct stats_view	 v;
	size_t			 i;

	memset(&v, 0, sizeof v);
	src->view(src->arg, &v);
	for (i = 0; i < v.nworkers; i++)
		session_walk(v.workers[i], fn, arg);
}

/* Close the connection with this id (end=killed); -1 if there is none. */
int
stats_kill(const struct stats_source *src, unsigned long long id)
{
	struct stats_view	 v;
	size_t			 i;

	memset(&v, 0, sizeof v);
	src->view(src->arg, &v);
	for (i = 0; i < v.nworkers; i++) {
		if (session_kill(v.workers[i], id) == 0)
			return (0);
	}
	return (-1);
}

/*
 * Disable (down) or enable the backends of a listener at an address (the
 * endpoint's address, or the host name it came from). Returns how many
 * endpoints that was, with *listener_found set if the listener exists.
 */
size_t
stats_backend_admin(const struct stats_source *src, const char *listener,
    const char *address, int down, int *listener_found)
{
	struct stats_view	 v;
	size_t			 i, n = 0;

	memset(&v, 0, sizeof v);
	src->view(src->arg, &v);
	*listener_found = 0;
	for (i = 0; i < v.npools; i++) {
		if (strcmp(v.pools[i]->lc->name, listener) != 0)
			continue;
		*listener_found = 1;
		n += backend_pool_admin(v.pools[i], address, down);
	}
	return (n);
}
