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

static int	 listener_open_one(struct listener_list *, struct event_base *,
		     const struct listener_conf *, const struct sockaddr *,
		     socklen_t, const char *, char **);
static int	 listener_socket(const struct listener_conf *,
		     const struct sockaddr *, socklen_t);
static int	 listener_setopt(int, int, int, int);
static int	 listener_have_ipv6(void);
static int	 listener_unix_stale(const struct sockaddr *, socklen_t);
static void	 listener_accept(struct evconnlistener *, evutil_socket_t,
		     struct sockaddr *, int, void *);
static void	 listener_error(struct evconnlistener *, void *);
static void	 listener_pause(struct listener *, int);
static void	 listener_backoff_end(evutil_socket_t, short, void *);

/*
 * Open the sockets of one listen address and append them to the list:
 * one for a literal address or a unix path, two for "*:port" (0.0.0.0
 * and [::], the latter IPv6-only). Returns -1 with *cause set.
 */
int
listener_open(struct listener_list *head, struct event_base *base,
    const struct listener_conf *lc, const struct address *a, char **cause)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	char			 text[64];

	switch (a->kind) {
	case ADDRESS_INET:
	case ADDRESS_UNIX:
		return (listener_open_one(head, base, lc,
		    (const struct sockaddr *)&a->ss, a->sslen, a->text, cause));
	case ADDRESS_ANY:
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
		sin.sin_port = htons(a->port);
		snprintf(text, sizeof text, "0.0.0.0:%u", a->port);
		if (listener_open_one(head, base, lc,
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
		return (listener_open_one(head, base, lc,
		    (struct sockaddr *)&sin6, sizeof sin6, text, cause));
	case ADDRESS_NAME:
		break;
	}
	xasprintf(cause, "cannot listen on %s: not a literal address",
	    a->text);
	return (-1);
}

/* Open one listening socket and wrap it, disabled, in a listener. */
static int
listener_open_one(struct listener_list *head, struct event_base *base,
    const struct listener_conf *lc, const struct sockaddr *sa,
    socklen_t salen, const char *text, char **cause)
{
	struct listener	*l;
	int		 fd, saved_errno;

	if ((fd = listener_socket(lc, sa, salen)) == -1) {
		xasprintf(cause, "cannot listen on %s: %s", text,
		    strerror(errno));
		return (-1);
	}

	l = xcalloc(1, sizeof *l);
	l->family = sa->sa_family;
	l->text = xstrdup(text);
	xasprintf(&l->key, "%s reuseport=%d freebind=%d defer_accept=%d",
	    text, lc->reuseport, lc->freebind, lc->defer_accept);
	/* Backlog 0: the socket already listens with ours. */
	l->evl = evconnlistener_new(base, listener_accept, l,
	    LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC|LEV_OPT_DISABLED, 0,
	    fd);
	if (l->evl == NULL) {
		saved_errno = errno;
		close(fd);
		errno = saved_errno;
		goto fail;
	}
	evconnlistener_set_error_cb(l->evl, listener_error);
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
listener_attach(struct listener *l, struct worker *w, struct config *conf,
    const struct listener_conf *lc, struct backend_pool *pool)
{
	l->worker = w;
	l->conf = conf;
	l->lc = lc;
	l->pool = pool;
}

/* Start accepting (unless an accept error back-off is running). */
void
listener_enable(struct listener *l)
{
	l->enabled = 1;
	if (!l->paused)
		evconnlistener_enable(l->evl);
}

/*
 * End an accept back-off: descriptors were freed or the timer ran out.
 * Only once the worker has its spare descriptor again.
 */
void
listener_resume(struct listener *l)
{
	struct timeval	 tv = { LISTENER_BACKOFF_SEC, 0 };

	if (!l->paused)
		return;
	if (!worker_has_reserve(l->worker)) {
		if (!evtimer_pending(l->backoff, NULL))
			evtimer_add(l->backoff, &tv);
		return;
	}
	evtimer_del(l->backoff);
	l->paused = 0;
	if (l->enabled)
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
	free(l->key);
	free(l->text);
	free(l);
}

/* Hand an accepted connection to a session. */
static void
listener_accept(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener		*l = arg;
	const struct listener_conf *lc = l->lc;

	if (l->family != AF_UNIX) {
		if (lc->nodelay)
			listener_setopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
		if (lc->keepalive)
			listener_setopt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	}
	session_accept(l->worker, l->conf, lc, l->pool, fd, sa,
	    (socklen_t)salen);
	/* The spare descriptor went to this client's backend: wait. */
	if (!worker_has_reserve(l->worker))
		listener_pause(l, EMFILE);
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
