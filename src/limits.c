/*
 * Connection caps: the global count against max_connections (by default
 * what RLIMIT_NOFILE allows), the count of each listener by name (kept
 * across reloads, since listeners are), its per-address counts, and the
 * rate limit on the log lines of refused connections. Counts are atomic
 * or behind a lock taken on accept and close only, so several event loops
 * can share them.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "acceptd.h"

/* Descriptors kept free beyond those open at startup (DNS, reload, ...). */
#define LIMITS_FD_RESERVE	16
/* More kept free for the clients of each control or metrics socket. */
#define LIMITS_FD_PER_SERVICE	8
/* With splice, a worker's pipes take at most 1/64 of the limit. */
#define LIMITS_FD_PER_PIPE_SHARE	64
/* Descriptors each connection needs: the client and its backend. */
#define LIMITS_FD_PER_CONN	2
/* Lines of denied and limit closes logged per window; then counted. */
#define LIMITS_LOG_BURST	10
#define LIMITS_LOG_WINDOW_MS	1000

TAILQ_HEAD(limits_list, limits);

static pthread_mutex_t	 limits_lock = PTHREAD_MUTEX_INITIALIZER;
static struct limits_list limits_all = TAILQ_HEAD_INITIALIZER(limits_all);
static long long	 limits_active;		/* atomic */
static long long	 limits_cap_value;	/* atomic; 0: none yet */

static pthread_mutex_t	 limits_log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct event	*limits_log_timer;
static long long	 limits_log_start;	/* window start, ms */
static int		 limits_log_lines;
static unsigned long long limits_log_suppressed;

static long long limits_fds_in_use(void);
static void	 limits_log_flush(evutil_socket_t, short, void *);
static void	 limits_log_suppressed_line(unsigned long long);

/*
 * The counts of the listener with this name, created on first use; a new
 * reference the caller drops with limits_unref.
 */
struct limits *
limits_get(const char *name)
{
	struct limits	*lim;

	pthread_mutex_lock(&limits_lock);
	TAILQ_FOREACH(lim, &limits_all, entry) {
		if (strcmp(lim->name, name) == 0) {
			lim->refcnt++;
			pthread_mutex_unlock(&limits_lock);
			return (lim);
		}
	}
	lim = xcalloc(1, sizeof *lim);
	lim->name = xstrdup(name);
	lim->refcnt = 1;
	lim->sources = acl_sources_new();
	TAILQ_INSERT_TAIL(&limits_all, lim, entry);
	pthread_mutex_unlock(&limits_lock);
	return (lim);
}

/* Take another reference. */
struct limits *
limits_ref(struct limits *lim)
{
	pthread_mutex_lock(&limits_lock);
	lim->refcnt++;
	pthread_mutex_unlock(&limits_lock);
	return (lim);
}

/* Drop a reference; the last one (no listener, no connection) frees. */
void
limits_unref(struct limits *lim)
{
	if (lim == NULL)
		return;
	pthread_mutex_lock(&limits_lock);
	if (--lim->refcnt > 0) {
		pthread_mutex_unlock(&limits_lock);
		return;
	}
	TAILQ_REMOVE(&limits_all, lim, entry);
	pthread_mutex_unlock(&limits_lock);
	acl_sources_free(lim->sources);
	free(lim->name);
	free(lim);
}

/* Count an accepted connection, globally and for its listener. */
void
limits_open(struct limits *lim)
{
	__atomic_add_fetch(&limits_active, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&lim->active, 1, __ATOMIC_RELAXED);
}

/* A connection counted by limits_open is gone. */
void
limits_close(struct limits *lim)
{
	__atomic_sub_fetch(&limits_active, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&lim->active, 1, __ATOMIC_RELAXED);
}

/* Is the global cap, or this listener's, reached? */
int
limits_full(const struct limits *lim, const struct listener_conf *lc)
{
	long long	 cap;

	cap = __atomic_load_n(&limits_cap_value, __ATOMIC_RELAXED);
	if (cap > 0 &&
	    __atomic_load_n(&limits_active, __ATOMIC_RELAXED) >= cap)
		return (1);
	return (lc->max_connections > 0 &&
	    __atomic_load_n(&lim->active, __ATOMIC_RELAXED) >=
	    lc->max_connections);
}

/* Connections open now, all listeners together. */
long long
limits_active_count(void)
{
	return (__atomic_load_n(&limits_active, __ATOMIC_RELAXED));
}

/* The global cap in force (0 before limits_configure). */
long long
limits_cap(void)
{
	return (__atomic_load_n(&limits_cap_value, __ATOMIC_RELAXED));
}

/* Descriptors open in this process now; -1 if /proc cannot say. */
static long long
limits_fds_in_use(void)
{
	DIR		*dir;
	struct dirent	*de;
	long long	 n = 0;

	if ((dir = opendir("/proc/self/fd")) == NULL)
		return (-1);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(dir);
	return (n - 1);	/* the directory's own descriptor */
}

/*
 * How many connections the descriptor limit allows: what is left of
 * RLIMIT_NOFILE once the descriptors already open (listening sockets,
 * event loop, log, control and metrics sockets) and a reserve for those
 * opened later (DNS, health checks, reload, control and metrics clients,
 * and with splice the pipes each worker may open) are set aside, two per
 * connection; at least 1. *pipes is how many pipes each worker may hold
 * open: 1/64 of the limit over the workers, 1 to RELAY_PIPES_MAX; 0
 * when no listener splices.
 */
long long
limits_allowed(const struct config *conf, unsigned long long *nofile,
    long long *in_use, long long *reserve, long long *pipes)
{
	struct rlimit	 rl;
	size_t		 i;
	long long	 n, nworkers;
	int		 splice = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		rl.rlim_cur = 1024 * 1024;
	*nofile = rl.rlim_cur;
	if ((*in_use = limits_fds_in_use()) == -1)
		*in_use = 16 + (long long)conf->nlisteners * 2;
	else {
		/* On a reload, open connections are not "other users", and
		 * open pipes are counted in the reserve below. */
		*in_use -= LIMITS_FD_PER_CONN * limits_active_count();
		*in_use -= relay_pipe_fds_open();
		if (*in_use < 3)
			*in_use = 3;
	}
	*reserve = LIMITS_FD_RESERVE;
	if (conf->control_socket != NULL)
		*reserve += LIMITS_FD_PER_SERVICE;
	if (conf->metrics != NULL)
		*reserve += LIMITS_FD_PER_SERVICE;
	for (i = 0; i < conf->nlisteners; i++) {
		if (conf->listeners[i].health.enabled)
			*reserve += (long long)conf->listeners[i].nbackends;
		if (conf->listeners[i].splice)
			splice = 1;
	}
	/* Pipes are taken only while bytes are in flight, at most this many. */
	*pipes = 0;
	if (splice) {
		nworkers = (long long)workers_count(conf);
		*pipes = (long long)*nofile / LIMITS_FD_PER_PIPE_SHARE / nworkers;
		if (*pipes > RELAY_PIPES_MAX)
			*pipes = RELAY_PIPES_MAX;
		if (*pipes < 1)
			*pipes = 1;
		*reserve += 2 * *pipes * nworkers;
	}
	n = ((long long)*nofile - *in_use - *reserve) / LIMITS_FD_PER_CONN;
	return (n < 1 ? 1 : n);
}

/*
 * Set the global cap from the configuration: max_connections, or what
 * RLIMIT_NOFILE allows when it is 0. A cap above what the limit allows is
 * kept, with a warning naming both numbers. Call it once the listening
 * sockets are open (and again after a reload).
 */
void
limits_configure(const struct config *conf)
{
	unsigned long long	 nofile;
	long long		 allowed, in_use, reserve, cap, pipes;

	allowed = limits_allowed(conf, &nofile, &in_use, &reserve, &pipes);
	if (pipes > 0)
		relay_set_pipes_max((int)pipes);
	cap = conf->max_connections;
	if (cap == 0)
		cap = allowed;
	else if (cap > allowed) {
		log_warnx("max_connections = %lld is above the %lld "
		    "connections that RLIMIT_NOFILE (%llu descriptors) allows; "
		    "keeping %lld: past %lld, accepting may fail with EMFILE "
		    "and pause", cap, allowed, nofile, cap, allowed);
	}
	__atomic_store_n(&limits_cap_value, cap, __ATOMIC_RELAXED);
	log_info("connection cap: %lld%s (RLIMIT_NOFILE %llu, %lld "
	    "descriptors open, %lld reserved)", cap,
	    conf->max_connections == 0 ? " from RLIMIT_NOFILE" : "",
	    nofile, in_use, reserve);
}

/*
 * Count a connection from an address against the listener's
 * max_connections_per_ip. Returns 1 if counted (release it at close), 0 if
 * nothing was counted, -1 if the address is at its cap.
 */
int
limits_source_take(struct limits *lim, const struct sockaddr *sa,
    long long max)
{
	return (acl_sources_take(lim->sources, sa, max));
}

/* Release what limits_source_take counted. */
void
limits_source_release(struct limits *lim, const struct sockaddr *sa)
{
	acl_sources_release(lim->sources, sa);
}

/* Set up the timer that writes the "suppressed" line on a base. */
void
limits_init(struct event_base *base)
{
	if (limits_log_timer == NULL)
		limits_log_timer = evtimer_new(base, limits_log_flush, NULL);
}

/* Write any pending "suppressed" line and free the timer. */
void
limits_shutdown(void)
{
	limits_log_flush(-1, 0, NULL);
	if (limits_log_timer != NULL) {
		event_free(limits_log_timer);
		limits_log_timer = NULL;
	}
}

/*
 * May the line of a denied or limit close be logged now? The first
 * LIMITS_LOG_BURST of a window are; the rest are counted, and one
 * "suppressed N" line follows when the window ends.
 */
int
limits_log_refused(void)
{
	struct timeval		 tv;
	unsigned long long	 flush = 0;
	long long		 now, left;
	int			 ok = 1;

	now = stats_now_ms();
	pthread_mutex_lock(&limits_log_lock);
	if (limits_log_start != 0 &&
	    now - limits_log_start >= LIMITS_LOG_WINDOW_MS) {
		flush = limits_log_suppressed;
		limits_log_suppressed = 0;
		limits_log_start = 0;
	}
	if (limits_log_start == 0) {
		limits_log_start = now;
		limits_log_lines = 0;
	}
	if (limits_log_lines < LIMITS_LOG_BURST)
		limits_log_lines++;
	else {
		ok = 0;
		if (limits_log_suppressed++ == 0 && limits_log_timer != NULL) {
			left = limits_log_start + LIMITS_LOG_WINDOW_MS - now;
			tv.tv_sec = left / 1000;
			tv.tv_usec = (left % 1000) * 1000;
			evtimer_add(limits_log_timer, &tv);
		}
	}
	pthread_mutex_unlock(&limits_log_lock);
	if (flush != 0)
		limits_log_suppressed_line(flush);
	return (ok);
}

/* The window is over: say how many lines were left out. */
static void
limits_log_flush(evutil_socket_t fd, short events, void *arg)
{
	unsigned long long	 n;

	pthread_mutex_lock(&limits_log_lock);
	n = limits_log_suppressed;
	limits_log_suppressed = 0;
	limits_log_start = 0;
	pthread_mutex_unlock(&limits_log_lock);
	if (n != 0)
		limits_log_suppressed_line(n);
}

/* Log the "suppressed N" line, as a connection line. */
static void
limits_log_suppressed_line(unsigned long long n)
{
	char		 line[128], field[64];
	const char	*fields[1];

	snprintf(line, sizeof line, "suppressed %llu connection line%s of "
	    "denied or limit closes", n, n == 1 ? "" : "s");
	snprintf(field, sizeof field, "ACCEPTD_SUPPRESSED=%llu", n);
	fields[0] = field;
	log_conn(line, fields, nitems(fields));
}
