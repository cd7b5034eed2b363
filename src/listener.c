/*
 * Listeners: our own socket, bind and listen with the listener's options,
 * wrapped in an evconnlistener; accept errors back off instead of spinning.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "acceptd.h"

/* How long accepting pauses after an accept error. */
#define LISTENER_BACKOFF_SEC	1
/* Accept errors closer than this belong to one episode, logged once. */
#define LISTENER_EPISODE_SEC	10

static int	 listener_open_addrs(struct listener_list *,
		     struct listener_list *, struct listener_list *,
		     struct event_base *, const struct listener_conf *,
		     const struct address *, char **);
static int	 listener_open_one(struct listener_list *,
		     struct listener_list *, struct listener_list *,
		     struct event_base *, const struct listener_conf *,
		     const struct sockaddr *, socklen_t, const char *, char **);
static int	 listener_wrap(struct listener *, struct event_base *, int);
static int	 listener_same_address(const struct listener *,
		     const struct sockaddr *, socklen_t);
static int	 listener_same_options(const struct listener *,
		     const struct listener_conf *);
static int	 listener_socket(const struct listener_conf *,
		     const struct sockaddr *, socklen_t);
static int	 listener_setopt(int, int, int, int);
static void	 listener_tcp_options(struct listener *,
		     const struct listener_conf *);
static int	 listener_have_ipv6(void);
static int	 listener_unix_stale(const struct sockaddr *, socklen_t);
static void	 listener_accept(struct evconnlistener *, evutil_socket_t,
		     struct sockaddr *, int, void *);
static void	 listener_error(struct evconnlistener *, void *);
static void	 listener_pause(struct listener *, int);
static void	 listener_backoff_end(evutil_socket_t, short, void *);
static void	 listener_cap(struct listener *);
static void	 listener_cap_all(void);

/*
 * Every attached listener, whatever list it is on, so that reaching the
 * global cap can stop them all at once (event loop thread only).
 */
static TAILQ_HEAD(, listener) listener_counted =
    TAILQ_HEAD_INITIALIZER(listener_counted);

/*
 * Open the sockets of one listen address and append them to the list:
 * one for a literal address or a unix path, two for "*:port" (0.0.0.0
 * and [::], the latter IPv6-only). Returns -1 with *cause set.
 */
int
listener_open(struct listener_list *head, struct event_base *base,
    const struct listener_conf *lc, const struct address *a, char **cause)
{
	return (listener_open_addrs(head, NULL, NULL, base, lc, a, cause));
}

/*
 * Open the sockets of one listen address for a reload into next, taking
 * over from running those whose address and bind-time options are the
 * same: they stay open and keep accepting. A running socket on the same
 * address with other options moves to replaced (closed, kept for
 * listener_reload_abort) so that the new one can be bound. Returns -1
 * with *cause set; listener_reload_abort then undoes everything.
 */
int
listener_reload_open(struct listener_list *next, struct listener_list *running,
    struct listener_list *replaced, struct event_base *base,
    const struct listener_conf *lc, const struct address *a, char **cause)
{
	return (listener_open_addrs(next, running, replaced, base, lc, a,
	    cause));
}

/* Both of the above: running is NULL at startup. */
static int
listener_open_addrs(struct listener_list *head, struct listener_list *running,
    struct listener_list *replaced, struct event_base *base,
    const struct listener_conf *lc, const struct address *a, char **cause)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	char			 text[64];

	switch (a->kind) {
	case ADDRESS_INET:
	case ADDRESS_UNIX:
		return (listener_open_one(head, running, replaced, base, lc,
		    (const struct sockaddr *)&a->ss, a->sslen, a->text, cause));
	case ADDRESS_ANY:
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
		sin.sin_port = htons(a->port);
		snprintf(text, sizeof text, "0.0.0.0:%u", a->port);
		if (listener_open_one(head, running, replaced, base, lc,
		    (struct sockaddr *)&sin, sizeof sin, text, cause) == -1)
			return (-1);
		if (!listener_have_ipv6()) {
			log_warnx("listener '%s': %s: no IPv6 on this host, "
			    "listening on 0.0.0.0 only", lc->name, a->text);
			return (0);
		}
		memset(&sin6, 0, sizeof sin6);
		sin6.sin6_family = AF_INET6;
		sin6.sin6_addr = in6addr_any;
		sin6.sin6_port = htons(a->port);
		snprintf(text, sizeof text, "[::]:%u", a->port);
		return (listener_open_one(head, running, replaced, base, lc,
		    (struct sockaddr *)&sin6, sizeof sin6, text, cause));
	case ADDRESS_NAME:
		break;
	}
	xasprintf(cause, "cannot listen on %s: not a literal address",
	    a->text);
	return (-1);
}

/*
 * Open one listening socket and wrap it, disabled, in a listener. On a
 * reload (running not NULL), a running socket with the same address and
 * options moves to head instead.
 */
static int
listener_open_one(struct listener_list *head, struct listener_list *running,
    struct listener_list *replaced, struct event_base *base,
    const struct listener_conf *lc, const struct sockaddr *sa,
    socklen_t salen, const char *text, char **cause)
{
	struct listener	*l;
	int		 fd, adopted;

	if (running != NULL) {
		TAILQ_FOREACH(l, running, entry) {
			if (listener_same_address(l, sa, salen))
				break;
		}
		if (l != NULL && listener_same_options(l, lc)) {
			TAILQ_REMOVE(running, l, entry);
			l->next_lc = lc;
			l->fresh = 0;
			TAILQ_INSERT_TAIL(head, l, entry);
			return (0);
		}
		if (l != NULL) {
			/* Close it, so that the new socket can be bound. */
			TAILQ_REMOVE(running, l, entry);
			evconnlistener_free(l->evl);
			l->evl = NULL;
			evtimer_del(l->backoff);
			l->paused = 0;
			TAILQ_INSERT_TAIL(replaced, l, entry);
		}
	}

	/* A socket systemd handed over at startup is taken, not bound. */
	adopted = LISTENER_BOUND;
	if ((fd = activation_take(lc->name, sa, salen, &adopted)) == -1 &&
	    (fd = listener_socket(lc, sa, salen)) == -1) {
		xasprintf(cause, "cannot listen on %s: %s", text,
		    strerror(errno));
		return (-1);
	}

	l = xcalloc(1, sizeof *l);
	l->adopted = adopted;
	l->family = sa->sa_family;
	l->text = xstrdup(text);
	xasprintf(&l->key, "%s reuseport=%d freebind=%d defer_accept=%d",
	    text, lc->reuseport, lc->freebind, lc->defer_accept);
	memcpy(&l->ss, sa, salen);
	l->sslen = salen;
	l->reuseport = lc->reuseport;
	l->freebind = lc->freebind;
	l->defer_accept = lc->defer_accept;
	l->backlog = lc->backlog;
	l->next_lc = lc;
	l->fresh = 1;
	if (listener_wrap(l, base, fd) == -1)
		goto fail;
	listener_tcp_options(l, lc);
	if ((l->backoff = evtimer_new(base, listener_backoff_end, l)) == NULL)
		goto fail;
	TAILQ_INSERT_TAIL(head, l, entry);
	return (0);

 fail:
	xasprintf(cause, "cannot listen on %s: cannot create listener",
	    text);
	listener_free(l);
	return (-1);
}

/*
 * Wrap a listening socket, disabled, in the listener's evconnlistener;
 * the socket is closed if that fails.
 */
static int
listener_wrap(struct listener *l, struct event_base *base, int fd)
{
	int	 saved_errno;

	/* Backlog 0: the socket already listens with ours. */
	l->evl = evconnlistener_new(base, listener_accept, l,
	    LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC|LEV_OPT_DISABLED, 0,
	    fd);
	if (l->evl == NULL) {
		saved_errno = errno;
		close(fd);
		errno = saved_errno;
		return (-1);
	}
	evconnlistener_set_error_cb(l->evl, listener_error);
	return (0);
}

/*
 * nodelay and keepalive go on the listening socket: accepted sockets
 * inherit them, which saves two system calls per connection.
 */
static void
listener_tcp_options(struct listener *l, const struct listener_conf *lc)
{
	int	 fd;

	if (l->family == AF_UNIX || l->evl == NULL)
		return;
	fd = evconnlistener_get_fd(l->evl);
	listener_setopt(fd, IPPROTO_TCP, TCP_NODELAY, lc->nodelay);
	listener_setopt(fd, SOL_SOCKET, SO_KEEPALIVE, lc->keepalive);
}

/* Is this listener's socket bound to that address? */
static int
listener_same_address(const struct listener *l, const struct sockaddr *sa,
    socklen_t salen)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;
	const struct sockaddr_un	*au, *bu;

	if (l->ss.ss_family != sa->sa_family)
		return (0);
	switch (sa->sa_family) {
	case AF_INET:
		a4 = (const struct sockaddr_in *)&l->ss;
		b4 = (const struct sockaddr_in *)sa;
		return (a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr);
	case AF_INET6:
		a6 = (const struct sockaddr_in6 *)&l->ss;
		b6 = (const struct sockaddr_in6 *)sa;
		return (a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		    sizeof a6->sin6_addr) == 0);
	case AF_UNIX:
		au = (const struct sockaddr_un *)&l->ss;
		bu = (const struct sockaddr_un *)sa;
		return (l->sslen == salen &&
		    memcmp(au->sun_path, bu->sun_path, salen -
		    offsetof(struct sockaddr_un, sun_path)) == 0);
	}
	return (0);
}

/*
 * Would the listener's socket be bound the same way with these settings?
 * The backlog is not a bind-time option: a reload applies it in place.
 */
static int
listener_same_options(const struct listener *l,
    const struct listener_conf *lc)
{
	if (l->family == AF_UNIX)
		return (1);	/* none of them applies to unix sockets */
	/* The socket unit set them, and holds the address bound. */
	if (l->adopted == LISTENER_FROM_UNIT)
		return (1);
	return (l->reuseport == lc->reuseport &&
	    l->freebind == lc->freebind &&
	    l->defer_accept == lc->defer_accept);
}

/*
 * The reload is on: close the sockets that are not in next (removed
 * addresses, replaced ones) and apply a changed backlog to those kept.
 * The caller then attaches every listener of next to its next_lc.
 */
void
listener_reload_commit(struct listener_list *next,
    struct listener_list *running, struct listener_list *replaced)
{
	struct listener	*l;
	int		 fd;

	while ((l = TAILQ_FIRST(running)) != NULL) {
		TAILQ_REMOVE(running, l, entry);
		log_info("listener '%s': closing %s", l->lc->name, l->text);
		listener_free(l);
	}
	while ((l = TAILQ_FIRST(replaced)) != NULL) {
		TAILQ_REMOVE(replaced, l, entry);
		listener_free(l);
	}
	TAILQ_FOREACH(l, next, entry) {
		if (!l->fresh)
			listener_tcp_options(l, l->next_lc);
		if (!l->fresh && l->backlog != l->next_lc->backlog) {
			fd = evconnlistener_get_fd(l->evl);
			if (listen(fd, l->next_lc->backlog) == -1) {
				log_warn("listener '%s': %s: cannot change the "
				    "backlog to %d", l->next_lc->name, l->text,
				    l->next_lc->backlog);
			} else
				l->backlog = l->next_lc->backlog;
		}
		l->fresh = 0;
	}
}

/*
 * The reload failed: give back to running what next took from it, close
 * what it bound, and open the replaced sockets again as they were.
 */
void
listener_reload_abort(struct listener_list *next,
    struct listener_list *running, struct listener_list *replaced,
    struct event_base *base)
{
	struct listener	*l;
	int		 fd;

	while ((l = TAILQ_FIRST(next)) != NULL) {
		TAILQ_REMOVE(next, l, entry);
		l->next_lc = NULL;
		if (l->fresh)
			listener_free(l);
		else
			TAILQ_INSERT_TAIL(running, l, entry);
	}
	while ((l = TAILQ_FIRST(replaced)) != NULL) {
		TAILQ_REMOVE(replaced, l, entry);
		fd = listener_socket(l->lc, (struct sockaddr *)&l->ss,
		    l->sslen);
		if (fd == -1 || listener_wrap(l, base, fd) == -1) {
			log_warn("listener '%s': cannot listen on %s again",
			    l->lc->name, l->text);
			listener_free(l);
			continue;
		}
		TAILQ_INSERT_TAIL(running, l, entry);
		if (l->enabled)
			listener_enable(l);
	}
}

/* Create, configure, bind and listen a socket; -1 with errno set. */
static int
listener_socket(const struct listener_conf *lc, const struct sockaddr *sa,
    socklen_t salen)
{
	int	 fd, saved_errno;

	if (sa->sa_family == AF_UNIX && listener_unix_stale(sa, salen) == -1)
		return (-1);
	fd = socket(sa->sa_family, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
	if (fd == -1)
		return (-1);
	if (sa->sa_family != AF_UNIX) {
		if (listener_setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1) == -1)
			goto fail;
		/* So that [::]:p can sit beside 0.0.0.0:p. */
		if (sa->sa_family == AF_INET6 &&
		    listener_setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) == -1)
			goto fail;
		if (lc->reuseport &&
		    listener_setopt(fd, SOL_SOCKET, SO_REUSEPORT, 1) == -1)
			goto fail;
		if (lc->freebind && sa->sa_family == AF_INET &&
		    listener_setopt(fd, IPPROTO_IP, IP_FREEBIND, 1) == -1)
			goto fail;
		if (lc->freebind && sa->sa_family == AF_INET6 &&
		    listener_setopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, 1) == -1)
			goto fail;
		/* Seconds the kernel holds a connection until data comes. */
		if (lc->defer_accept &&
		    listener_setopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, 1) == -1)
			goto fail;
	}
	if (bind(fd, sa, salen) == -1)
		goto fail;
	/* Anyone may connect; the directory decides who can reach it. */
	if (sa->sa_family == AF_UNIX &&
	    chmod(((const struct sockaddr_un *)sa)->sun_path, 0666) == -1)
		goto fail;
	if (listen(fd, lc->backlog) == -1)
		goto fail;
	return (fd);

 fail:
	saved_errno = errno;
	close(fd);
	errno = saved_errno;
	return (-1);
}

/* Set an integer socket option. */
static int
listener_setopt(int fd, int level, int name, int value)
{
	return (setsockopt(fd, level, name, &value, sizeof value));
}

/* Can this host make IPv6 sockets at all? */
static int
listener_have_ipv6(void)
{
	int	 fd;

	if ((fd = socket(AF_INET6, SOCK_STREAM|SOCK_CLOEXEC, 0)) == -1)
		return (errno != EAFNOSUPPORT);
	close(fd);
	return (1);
}

/*
 * Remove a unix socket file left behind by a process that is gone: only
 * when nothing accepts on it. Something listening is EADDRINUSE.
 */
static int
listener_unix_stale(const struct sockaddr *sa, socklen_t salen)
{
	const struct sockaddr_un	*sun = (const struct sockaddr_un *)sa;
	struct stat			 st;
	int				 fd, r, saved_errno;

	if (lstat(sun->sun_path, &st) == -1 || !S_ISSOCK(st.st_mode))
		return (0);	/* bind says what is wrong, if anything */
	if ((fd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	r = connect(fd, sa, salen);
	saved_errno = errno;
	close(fd);
	if (r == 0 || saved_errno == EAGAIN) {
		errno = EADDRINUSE;
		return (-1);
	}
	if (saved_errno == ECONNREFUSED && unlink(sun->sun_path) == -1 &&
	    errno != ENOENT)
		return (-1);
	return (0);
}

/* Say where the connections accepted by a listener go. */
void
listener_attach(struct listener *l, struct workers *ws, struct config *conf,
    const struct listener_conf *lc, struct backend_pool *pool)
{
	struct limits	*lim;

	l->workers = ws;
	l->conf = conf;
	l->lc = lc;
	l->pool = pool;

	/* Counts go by name: a listener kept by a reload keeps them. */
	if (l->limits == NULL || strcmp(l->limits->name, lc->name) != 0) {
		lim = limits_get(lc->name);
		limits_unref(l->limits);
		l->limits = lim;
	}
	if (!l->counted) {
		TAILQ_INSERT_TAIL(&listener_counted, l, all);
		l->counted = 1;
	}
	listener_cap(l);
}

/*
 * Start accepting, unless an accept error back-off is running or the
 * listener is at its connection cap.
 */
void
listener_enable(struct listener *l)
{
	l->enabled = 1;
	if (l->limits != NULL)
		l->capped = limits_full(l->limits, l->lc);
	if (!l->paused && !l->capped)
		evconnlistener_enable(l->evl);
}

/*
 * At max_connections (global or the listener's) stop accepting: new
 * clients wait in the kernel's backlog. Below it, accept again.
 */
static void
listener_cap(struct listener *l)
{
	int	 full;

	if (l->limits == NULL || l->evl == NULL)
		return;
	full = limits_full(l->limits, l->lc);
	if (full == l->capped)
		return;
	l->capped = full;
	if (full) {
		evconnlistener_disable(l->evl);
		if (l->pool != NULL)
			stats_cap_paused(l->pool->stats);
	} else if (l->enabled && !l->paused)
		evconnlistener_enable(l->evl);
}

/* A cap was reached: apply it to every listener it covers. */
static void
listener_cap_all(void)
{
	struct listener	*l;

	TAILQ_FOREACH(l, &listener_counted, all)
		listener_cap(l);
}

/*
 * A connection closed or the back-off timer ran out: accept again below
 * the cap, and end an accept back-off once every worker has its spare
 * descriptor again.
 */
void
listener_resume(struct listener *l)
{
	struct timeval	 tv = { LISTENER_BACKOFF_SEC, 0 };

	listener_cap(l);
	if (!l->paused)
		return;
	if (!workers_has_reserve(l->workers)) {
		if (!evtimer_pending(l->backoff, NULL))
			evtimer_add(l->backoff, &tv);
		return;
	}
	evtimer_del(l->backoff);
	l->paused = 0;
	if (l->enabled && !l->capped)
		evconnlistener_enable(l->evl);
}

/* Close the socket and free the listener; unix socket files stay. */
void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->evl != NULL)
		evconnlistener_free(l->evl);
	if (l->backoff != NULL)
		event_free(l->backoff);
	if (l->counted)
		TAILQ_REMOVE(&listener_counted, l, all);
	limits_unref(l->limits);
	free(l->key);
	free(l->text);
	free(l);
}

/* Hand an accepted connection to a worker. */
static void
listener_accept(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener		*l = arg;
	const struct listener_conf *lc = l->lc;

	/* Counted here, before any hand-over: the session releases it. */
	limits_open(l->limits);
	workers_accept(l->workers, l->conf, lc, l->pool, l->limits, fd, sa,
	    (socklen_t)salen);
	/* A spare descriptor went to a client's backend: wait. */
	if (!workers_has_reserve(l->workers))
		listener_pause(l, EMFILE);
	if (limits_full(l->limits, lc))
		listener_cap_all();
}

/* An accept error (EMFILE, ENFILE, ENOBUFS, ...): pause accepting. */
static void
listener_error(struct evconnlistener *evl, void *arg)
{
	listener_pause(arg, EVUTIL_SOCKET_ERROR());
}

/*
 * Stop accepting for a while: the pending connection would wake the loop
 * again at once. Log once per episode; a session that closes (freeing
 * descriptors) or the back-off timer resumes.
 */
static void
listener_pause(struct listener *l, int err)
{
	struct timeval	 tv = { LISTENER_BACKOFF_SEC, 0 };
	struct timespec	 ts;

	evconnlistener_disable(l->evl);
	if (!l->paused && l->pool != NULL)
		stats_backoff(l->pool->stats);
	l->paused = 1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (l->last_error == 0 ||
	    ts.tv_sec - l->last_error >= LISTENER_EPISODE_SEC) {
		log_warnx("listener '%s' on %s: accept failed: %s; pausing "
		    "accepts until a connection closes or for %ds", l->lc->name,
		    l->text, strerror(err), LISTENER_BACKOFF_SEC);
	}
	l->last_error = ts.tv_sec;
	evtimer_add(l->backoff, &tv);
}

/* Try accepting again after a back-off. */
static void
listener_backoff_end(evutil_socket_t fd, short events, void *arg)
{
	listener_resume(arg);
}
