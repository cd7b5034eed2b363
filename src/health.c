/*
 * Active health checks: a TCP connect to each endpoint of a pool every
 * health_check interval, that must succeed within its timeout. Results go
 * to backend.c, which counts rise and fall. Each endpoint's first check
 * comes at a random point of the first interval and each later one a
 * random 0 to 10% sooner than a full interval after the one before, so
 * that checks of many endpoints (and of many acceptd) do not fire in
 * lockstep, and a failure is seen within fall intervals. All of it runs
 * on the main loop.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

#include "acceptd.h"

/* One endpoint's checks. */
struct health_probe {
	struct backend_pool	*pool;
	struct backend		*b;
	struct event_base	*base;
	struct event		*timer;		/* the next check */
	struct event		*conn;		/* the connect in progress */
	int			 fd;
	long long		 start_ms;	/* of the last check */
};

static long long health_random(long long);
static void	 health_schedule(struct health_probe *, long long);
static void	 health_run(evutil_socket_t, short, void *);
static void	 health_connect_done(evutil_socket_t, short, void *);
static void	 health_finish(struct health_probe *, int, int, const char *);

/* A random number of milliseconds in [0, n). */
static long long
health_random(long long n)
{
	uint64_t	 r;

	if (n <= 0)
		return (0);
	evutil_secure_rng_get_bytes(&r, sizeof r);
	return ((long long)(r % (uint64_t)n));
}

/* Arm the timer for the next check, delay milliseconds from now. */
static void
health_schedule(struct health_probe *p, long long delay)
{
	struct timeval	 tv;

	if (delay < 0)
		delay = 0;
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	if (event_add(p->timer, &tv) == -1)
		log_warnx("listener '%s': backend %s: cannot schedule its "
		    "health check", p->b->listener, p->b->text);
}

/*
 * Start checking an endpoint of a pool: the first check comes at a random
 * point of the first interval. An endpoint already checked is left alone.
 */
void
health_start(struct backend_pool *pool, struct backend *b,
    struct event_base *base)
{
	struct health_probe	*p;

	if (b->probe != NULL)
		return;
	if ((p = calloc(1, sizeof *p)) == NULL) {
		log_warnx("listener '%s': backend %s: no memory for its "
		    "health check", b->listener, b->text);
		return;
	}
	p->pool = pool;
	p->b = b;
	p->base = base;
	p->fd = -1;
	if ((p->timer = evtimer_new(base, health_run, p)) == NULL) {
		log_warnx("listener '%s': backend %s: cannot set up its "
		    "health check", b->listener, b->text);
		free(p);
		return;
	}
	b->probe = p;
	health_schedule(p, health_random(pool->lc->health.interval_ms));
}

/* Stop checking an endpoint, dropping a check in progress. */
void
health_stop(struct backend *b)
{
	struct health_probe	*p = b->probe;

	if (p == NULL)
		return;
	if (p->conn != NULL)
		event_free(p->conn);
	if (p->fd != -1)
		close(p->fd);
	event_free(p->timer);
	free(p);
	b->probe = NULL;
}

/* Time for a check: start a non-blocking connect to the endpoint. */
static void
health_run(evutil_socket_t timer_fd, short events, void *arg)
{
	struct health_probe	*p = arg;
	struct backend		*b = p->b;
	const struct health_conf *hc = &p->pool->lc->health;
	struct timeval		 tv;
	int			 fd, err;

	p->start_ms = stats_now_ms();
	fd = socket(b->ss.ss_family, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		health_finish(p, 0, 1, strerror(errno));
		return;
	}
	if (connect(fd, (struct sockaddr *)&b->ss, b->sslen) == 0) {
		close(fd);
		health_finish(p, 1, 0, NULL);
		return;
	}
	if (errno != EINPROGRESS && errno != EINTR) {
		err = errno;
		close(fd);
		health_finish(p, 0, err == EADDRNOTAVAIL || err == ENOBUFS ||
		    err == ENOMEM, strerror(err));
		return;
	}
	p->conn = event_new(p->base, fd, EV_WRITE, health_connect_done, p);
	tv.tv_sec = hc->timeout_ms / 1000;
	tv.tv_usec = (hc->timeout_ms % 1000) * 1000;
	if (p->conn == NULL || event_add(p->conn, &tv) == -1) {
		if (p->conn != NULL)
			event_free(p->conn);
		p->conn = NULL;
		close(fd);
		health_finish(p, 0, 1, "cannot wait for the connect");
		return;
	}
	p->fd = fd;
}

/* The connect finished, failed or timed out. */
static void
health_connect_done(evutil_socket_t fd, short events, void *arg)
{
	struct health_probe	*p = arg;
	socklen_t		 len = sizeof(int);
	int			 err = 0;

	event_free(p->conn);
	p->conn = NULL;
	p->fd = -1;
	if (events & EV_TIMEOUT) {
		close(fd);
		health_finish(p, 0, 0, "timed out");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	close(fd);
	if (err != 0)
		health_finish(p, 0, 0, strerror(err));
	else
		health_finish(p, 1, 0, NULL);
}

/*
 * Report a check and schedule the next one: a random 0 to 10% sooner than
 * a full interval after this one started, so never later than that. A
 * failure of ours (local) is not reported.
 */
static void
health_finish(struct health_probe *p, int ok, int local, const char *why)
{
	long long	 interval = p->pool->lc->health.interval_ms;
	long long	 next;

	if (local)
		log_debug("%s: %s: check not made: %s", __func__, p->b->text,
		    why);
	else
		backend_check_done(p->pool, p->b, ok, why);
	next = p->start_ms + interval - health_random(interval / 10 + 1);
	health_schedule(p, next - stats_now_ms());
}
