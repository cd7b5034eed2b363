/*
 * Sessions: one accepted client paired with one backend connection, from
 * the connect and its retries through the relay and the half-closes to the
 * single close that logs the connection line.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "acceptd.h"

enum session_state {
	SESSION_HEADER,		/* accept_proxy: reading the header */
	SESSION_CONNECTING,
	SESSION_RELAYING
};

/* One side of a session. */
struct session_end {
	struct bufferevent	*bev;
	int			 eof;		/* its FIN was read */
	int			 shut_wr;	/* peer's FIN passed on */
	int			 paused;	/* not read: peer is full */
	unsigned long long	 nread;		/* bytes relayed from it */
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	unsigned long long	 id;		/* unique in the process */
	struct stats_listener	*stats;		/* its listener's counters */
	long long		 start_us;	/* for the connect duration */
	struct worker		*worker;
	struct config		*conf;		/* snapshot it started with */
	const struct listener_conf *lc;
	struct backend_pool	*pool;
	struct backend		*chosen;	/* tried, then connected */
	struct backend_tried	 tried;		/* not to be tried again */
	int			 attempts;
	enum session_state	 state;
	int			 first_fin;	/* END_*_FIN, or -1 */

	struct session_end	 client;
	struct session_end	 backend;

	struct sockaddr_storage	 client_ss;	/* or PROXY header's */
	socklen_t		 client_sslen;
	struct sockaddr_storage	 local_ss;	/* where it came in */
	socklen_t		 local_sslen;
	struct limits		*limits;	/* holds a slot in it */
	int			 source_counted; /* max_connections_per_ip */
	struct event		*timer;		/* idle_timeout, fin_timeout */
	long long		 start_ms;
	long long		 last_ms;	/* last byte either way */
};

/* The end= names, indexed by enum end_reason. */
static const char *session_end_names[END_MAX] = {
	"client_fin",
	"backend_fin",
	"client_reset",
	"backend_reset",
	"idle_timeout",
	"fin_timeout",
	"connect_failed",
	"no_backend",
	"denied",
	"limit",
	"bad_proxy_header",
	"shutdown",
	"killed",
	"error"
};

/* Connection ids: shared by every worker, never reused. */
static unsigned long long session_next_id;

static const char *session_state_name(const struct session *);
static enum end_reason session_admit(struct session *, int);
static void	 session_start(struct session *);
static void	 session_header(struct session *);
static int	 session_send_proxy(struct session *);
static void	 session_connect(struct session *);
static void	 session_connected(struct session *);
static int	 session_relay(struct session *, struct session_end *,
		     struct session_end *);
static void	 session_shutdown(struct session_end *);
static int	 session_done(struct session *);
static void	 session_drained(struct session *, struct session_end *,
		     struct session_end *);
static void	 session_event(struct session *, struct session_end *,
		     struct session_end *, short, int);
static void	 session_reset(struct session_end *);
static long long session_timeout(struct session *, enum end_reason *);
static void	 session_timer_arm(struct session *);
static void	 session_timer(evutil_socket_t, short, void *);
static void	 session_set_sockopts(struct session *, int);
static const char *session_value(const char *, char *, size_t);
static void	 session_log_connect(struct session *);
static void	 session_log_close(struct session *, enum end_reason,
		     unsigned long long, unsigned long long);
static void	 session_client_read(struct bufferevent *, void *);
static void	 session_client_write(struct bufferevent *, void *);
static void	 session_client_event(struct bufferevent *, short, void *);
static void	 session_backend_read(struct bufferevent *, void *);
static void	 session_backend_write(struct bufferevent *, void *);
static void	 session_backend_event(struct bufferevent *, short, void *);
static void	 session_walk_copy(struct worker *, void *);
static void	 session_kill_one(struct worker *, void *);

/* Return the name of an end reason. */
const char *
session_end_name(enum end_reason why)
{
	if (why >= END_MAX)
		return ("error");
	return (session_end_names[why]);
}

/*
 * Start a session for an accepted client and connect it to a backend, or
 * first read its PROXY header (accept_proxy). The connection slot that
 * the listener counted in lim is the session's to release. A failure here
 * closes this connection only.
 */
void
session_accept(struct worker *w, struct config *conf,
    const struct listener_conf *lc, struct backend_pool *pool,
    struct limits *lim, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct session	*s;
	enum end_reason	 why;
	struct timeval	 tv;
	size_t		 high;

	if ((s = calloc(1, sizeof *s)) == NULL) {
		log_warn("listener '%s': dropping a connection", lc->name);
		close(fd);
		limits_close(lim);
		return;
	}
	s->id = __atomic_add_fetch(&session_next_id, 1, __ATOMIC_RELAXED);
	s->stats = pool->stats;
	s->start_us = stats_now_us();
	s->worker = w;
	s->conf = config_ref(conf);
	s->lc = lc;
	s->pool = backend_pool_ref(pool);
	s->limits = limits_ref(lim);
	s->first_fin = -1;
	s->state = SESSION_CONNECTING;
	s->start_ms = s->last_ms = stats_now_ms();
	if (salen > sizeof s->client_ss)
		salen = sizeof s->client_ss;
	memcpy(&s->client_ss, sa, salen);
	s->client_sslen = salen;
	s->local_sslen = sizeof s->local_ss;
	if (getsockname(fd, (struct sockaddr *)&s->local_ss,
	    &s->local_sslen) == -1)
		s->local_sslen = 0;
	TAILQ_INSERT_TAIL(&w->sessions, s, entry);
	worker_session_opened(w);
	stats_opened(s->stats);

	/* With accept_proxy, the peer is checked now, the client later. */
	if ((why = session_admit(s, !lc->accept_proxy)) != END_MAX) {
		close(fd);
		session_close(s, why);
		return;
	}

	s->client.bev = bufferevent_socket_new(w->base, fd,
	    BEV_OPT_CLOSE_ON_FREE|BEV_OPT_DEFER_CALLBACKS);
	if (s->client.bev == NULL) {
		close(fd);
		session_close(s, END_ERROR);
		return;
	}
	if ((s->timer = evtimer_new(w->base, session_timer, s)) == NULL) {
		session_close(s, END_ERROR);
		return;
	}
	bufferevent_setcb(s->client.bev, session_client_read,
	    session_client_write, session_client_event, s);
	/* Above this, libevent stops reading: bytes wait for a backend. */
	bufferevent_setwatermark(s->client.bev, EV_READ, 0, lc->buffer_size);
	bufferevent_setwatermark(s->client.bev, EV_WRITE,
	    lc->buffer_size / 2, 0);
	if (bufferevent_enable(s->client.bev, EV_READ|EV_WRITE) == -1) {
		session_close(s, END_ERROR);
		return;
	}
	if (!lc->accept_proxy) {
		session_start(s);
		return;
	}

	/* The header must come whole within connect_timeout. */
	s->state = SESSION_HEADER;
	high = lc->buffer_size > PROXYPROTO_MAX ? lc->buffer_size :
	    PROXYPROTO_MAX;
	bufferevent_setwatermark(s->client.bev, EV_READ, 0, high);
	tv.tv_sec = lc->connect_timeout_ms / 1000;
	tv.tv_usec = (lc->connect_timeout_ms % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

/*
 * May this client be served? deny, then allow, then (if count_source)
 * max_connections_per_ip, on the client address; unix clients are not
 * subject to them. Returns END_MAX if so, or the end reason to close with.
 */
static enum end_reason
session_admit(struct session *s, int count_source)
{
	const struct sockaddr	*sa;
	int			 r;

	sa = (const struct sockaddr *)&s->client_ss;
	if (acl_check(s->lc, sa) == -1)
		return (END_DENIED);
	if (!count_source)
		return (END_MAX);
	r = limits_source_take(s->limits, sa, s->lc->max_connections_per_ip);
	if (r == -1)
		return (END_LIMIT);
	s->source_counted = (r == 1);
	return (END_MAX);
}

/* Connect to a backend. */
static void
session_start(struct session *s)
{
	s->state = SESSION_CONNECTING;
	session_connect(s);
}

/*
 * accept_proxy: parse the PROXY header once it is whole. Its client
 * address replaces the peer's for everything after (lists, caps, logs,
 * balancing, send_proxy); what follows it waits for the backend. A bad
 * header closes the client before any backend is contacted.
 */
static void
session_header(struct session *s)
{
	struct evbuffer		*in;
	struct proxyproto	 pp;
	const uint8_t		*p;
	const char		*why;
	char			 peer[256];
	enum end_reason		 end;
	size_t			 len, used;
	int			 r;

	in = bufferevent_get_input(s->client.bev);
	if ((len = evbuffer_get_length(in)) > PROXYPROTO_MAX)
		len = PROXYPROTO_MAX;
	if ((p = evbuffer_pullup(in, (ssize_t)len)) == NULL && len != 0) {
		session_close(s, END_ERROR);
		return;
	}
	if ((r = proxyproto_decode(p, len, &pp, &used, &why)) == 0)
		return;
	if (r == -1) {
		if (log_enabled(LOG_LEVEL_DEBUG)) {
			format_sockaddr((struct sockaddr *)&s->client_ss,
			    s->client_sslen, peer, sizeof peer);
			log_debug("%s: listener '%s': client %s: bad PROXY "
			    "header: %s", __func__, s->lc->name, peer, why);
		}
		session_close(s, END_BAD_PROXY_HEADER);
		return;
	}
	evbuffer_drain(in, used);
	if (!pp.local) {
		memcpy(&s->client_ss, &pp.src, pp.srclen);
		s->client_sslen = pp.srclen;
		memcpy(&s->local_ss, &pp.dst, pp.dstlen);
		s->local_sslen = pp.dstlen;
	}
	if ((end = session_admit(s, 1)) != END_MAX) {
		session_close(s, end);
		return;
	}
	evtimer_del(s->timer);
	bufferevent_setwatermark(s->client.bev, EV_READ, 0,
	    s->lc->buffer_size);
	session_start(s);
}

/* send_proxy: the PROXY header goes to the backend before any byte. */
static int
session_send_proxy(struct session *s)
{
	uint8_t	 buf[PROXYPROTO_ENCODE_MAX];
	int	 n;

	n = proxyproto_encode(s->lc->send_proxy,
	    (const struct sockaddr *)&s->client_ss,
	    s->local_sslen == 0 ? NULL : (const struct sockaddr *)&s->local_ss,
	    buf, sizeof buf);
	if (n == -1)
		return (-1);
	return (bufferevent_write(s->backend.bev, buf, (size_t)n));
}

/*
 * Connect to the backend the pool chooses (balance, skipping backends
 * that are down or that this connection tried). A connect that fails at
 * once comes back here directly, one that fails later through the
 * backend's event callback; the client's bytes wait in its input buffer.
 * The source balance hashes client_ss, the PROXY header's client if any.
 */
static void
session_connect(struct session *s)
{
	struct bufferevent	*bev;
	struct backend		*b = NULL;
	struct timeval		 tv;
	int			 err;

	for (;;) {
		if (b == NULL && s->attempts <= s->lc->retries)
			b = backend_pool_choose(s->pool,
			    (const struct sockaddr *)&s->client_ss,
			    s->client_sslen, &s->tried, s);
		if (b == NULL) {
			session_close(s, s->attempts == 0 ? END_NO_BACKEND :
			    END_CONNECT_FAILED);
			return;
		}
		s->attempts++;
		s->chosen = b;

		bev = bufferevent_socket_new(s->worker->base, -1,
		    BEV_OPT_CLOSE_ON_FREE|BEV_OPT_DEFER_CALLBACKS);
		if (bev == NULL) {
			session_close(s, END_ERROR);
			return;
		}
		s->backend.bev = bev;
		bufferevent_setcb(bev, session_backend_read,
		    session_backend_write, session_backend_event, s);
		/* The write timeout covers a pending connect. */
		tv.tv_sec = s->lc->connect_timeout_ms / 1000;
		tv.tv_usec = (s->lc->connect_timeout_ms % 1000) * 1000;
		bufferevent_set_timeouts(bev, NULL, &tv);
		if (bufferevent_socket_connect(bev,
		    (const struct sockaddr *)&b->ss, (int)b->sslen) == 0)
			return;
		err = EVUTIL_SOCKET_ERROR();
		s->backend.bev = NULL;
		bufferevent_free(bev);
		if (err == EMFILE || err == ENFILE) {
			/* Our shortage, not the backend's: use the spare. */
			if (worker_use_reserve(s->worker) == 0) {
				s->attempts--;
				continue;	/* the same backend again */
			}
			log_info("listener '%s': no descriptor for a backend "
			    "connection: %s", s->lc->name,
			    evutil_socket_error_to_string(err));
			session_close(s, END_ERROR);
			return;
		}
		log_debug("%s: listener '%s': backend %s: connect failed: %s",
		    __func__, s->lc->name, b->text,
		    evutil_socket_error_to_string(err));
		backend_failed(b, err, 0, s);
		backend_release(b, s);
		s->chosen = b = NULL;
	}
}

/* The backend answered: relay what the client sent so far, and go on. */
static void
session_connected(struct session *s)
{
	struct bufferevent	*bev = s->backend.bev;
	size_t			 bs = s->lc->buffer_size;

	backend_connected(s->chosen, s);
	stats_connected(s->stats, stats_now_us() - s->start_us);
	s->state = SESSION_RELAYING;
	bufferevent_set_timeouts(bev, NULL, NULL);
	session_set_sockopts(s, bufferevent_getfd(bev));
	bufferevent_setwatermark(bev, EV_READ, 0, bs);
	bufferevent_setwatermark(bev, EV_WRITE, bs / 2, 0);
	if (bufferevent_enable(bev, EV_READ|EV_WRITE) == -1) {
		session_close(s, END_ERROR);
		return;
	}
	if (s->conf->log_connections == LOG_CONNS_ALL)
		session_log_connect(s);
	s->last_ms = stats_now_ms();
	if (s->lc->send_proxy != SEND_PROXY_NONE &&
	    session_send_proxy(s) == -1) {
		session_close(s, END_ERROR);
		return;
	}

	if (session_relay(s, &s->client, &s->backend) == -1) {
		session_close(s, END_ERROR);
		return;
	}
	if (s->client.eof &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		session_shutdown(&s->backend);
	session_timer_arm(s);
}

/* Apply the listener's TCP options to a backend connection. */
static void
session_set_sockopts(struct session *s, int fd)
{
	int	 one = 1;

	if (fd == -1 || s->chosen->ss.ss_family == AF_UNIX)
		return;
	if (s->lc->nodelay)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (s->lc->keepalive)
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

/*
 * Move what one end sent to the other end's output. Stop reading it once
 * that output holds buffer_size; the other end's write callback resumes.
 */
static int
session_relay(struct session *s, struct session_end *from,
    struct session_end *to)
{
	struct evbuffer	*in = bufferevent_get_input(from->bev);
	struct evbuffer	*out = bufferevent_get_output(to->bev);
	size_t		 n;

	if ((n = evbuffer_get_length(in)) == 0)
		return (0);
	if (evbuffer_add_buffer(out, in) == -1)
		return (-1);
	from->nread += n;
	if (from == &s->client)
		stats_bytes(s->stats, n, 0);
	else
		stats_bytes(s->stats, 0, n);
	s->last_ms = stats_now_ms();
	if (!from->paused && !from->eof &&
	    evbuffer_get_length(out) >= s->lc->buffer_size) {
		bufferevent_disable(from->bev, EV_READ);
		from->paused = 1;
	}
	return (0);
}

/* Pass a FIN on: nothing more will be written to this end. */
static void
session_shutdown(struct session_end *e)
{
	if (e->shut_wr)
		return;
	e->shut_wr = 1;
	/* A peer already gone is reported by the event callback. */
	shutdown(bufferevent_getfd(e->bev), SHUT_WR);
}

/* Are both directions finished: FIN read and passed on, both ways? */
static int
session_done(struct session *s)
{
	return (s->client.eof && s->backend.shut_wr &&
	    s->backend.eof && s->client.shut_wr);
}

/*
 * An end's output went below its low watermark: resume reading the other
 * end if it was paused, and pass its FIN on once everything is written.
 */
static void
session_drained(struct session *s, struct session_end *from,
    struct session_end *to)
{
	size_t	 len;

	if (s->state != SESSION_RELAYING)
		return;
	len = evbuffer_get_length(bufferevent_get_output(to->bev));
	s->last_ms = stats_now_ms();
	if (from->paused && len <= s->lc->buffer_size / 2) {
		from->paused = 0;
		if (bufferevent_enable(from->bev, EV_READ) == -1) {
			session_close(s, END_ERROR);
			return;
		}
	}
	if (from->eof && len == 0 && !to->shut_wr) {
		session_shutdown(to);
		if (session_done(s)) {
			session_close(s, (enum end_reason)s->first_fin);
			return;
		}
	}
}

/*
 * EOF, error or timeout on one end. EOF is a half-close: deliver what is
 * left, pass the FIN on and keep the other direction going. A reset or an
 * error ends the session and is passed on as a reset. Deferred callbacks
 * merge events (a write's ECONNRESET, then the read's EOF), so an error
 * wins over an EOF.
 */
static void
session_event(struct session *s, struct session_end *e,
    struct session_end *peer, short what, int err)
{
	int	 is_client = (e == &s->client);

	if (what & BEV_EVENT_ERROR) {
		if (err == ECONNRESET || err == EPIPE) {
			session_close(s, is_client ? END_CLIENT_RESET :
			    END_BACKEND_RESET);
			return;
		}
		log_info("listener '%s': %s connection: %s", s->lc->name,
		    is_client ? "client" : "backend",
		    evutil_socket_error_to_string(err));
		session_close(s, END_ERROR);
		return;
	}
	if (s->state == SESSION_HEADER) {
		/* The header read callback ran first: it was not whole. */
		session_close(s, END_BAD_PROXY_HEADER);
		return;
	}
	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
		e->eof = 1;
		if (s->first_fin == -1)
			s->first_fin = is_client ? END_CLIENT_FIN :
			    END_BACKEND_FIN;
		if (s->state != SESSION_RELAYING)
			return;	/* the connect passes it on */
		if (session_relay(s, e, peer) == -1) {
			session_close(s, END_ERROR);
			return;
		}
		if (evbuffer_get_length(bufferevent_get_output(peer->bev)) == 0)
			session_shutdown(peer);
		if (session_done(s)) {
			session_close(s, (enum end_reason)s->first_fin);
			return;
		}
		session_timer_arm(s);	/* fin_timeout applies from now */
		return;
	}
	session_close(s, END_ERROR);
}

/* Make closing this end send a reset (SO_LINGER 0). */
static void
session_reset(struct session_end *e)
{
	struct linger	 lg = { 1, 0 };
	int		 fd;

	if (e->bev == NULL || (fd = bufferevent_getfd(e->bev)) == -1)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/*
 * The inactivity allowed now: fin_timeout once a side sent its FIN,
 * idle_timeout otherwise, whichever is shorter; 0 is none.
 */
static long long
session_timeout(struct session *s, enum end_reason *why)
{
	long long	 idle = s->lc->idle_timeout_ms;
	long long	 fin = s->lc->fin_timeout_ms;

	if ((s->client.eof || s->backend.eof) && fin > 0 &&
	    (idle == 0 || fin <= idle)) {
		*why = END_FIN_TIMEOUT;
		return (fin);
	}
	*why = END_IDLE_TIMEOUT;
	return (idle);
}

/* (Re)arm the session timer for the end of the allowed inactivity. */
static void
session_timer_arm(struct session *s)
{
	enum end_reason	 why;
	struct timeval	 tv;
	long long	 t, left;

	if ((t = session_timeout(s, &why)) == 0) {
		evtimer_del(s->timer);
		return;
	}
	left = s->last_ms + t - stats_now_ms();
	if (left < 0)
		left = 0;
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

/*
 * The timer fired: close if nothing moved for the allowed time, or sleep
 * until the new deadline. Bytes never re-arm the timer themselves.
 */
static void
session_timer(evutil_socket_t fd, short events, void *arg)
{
	struct session	*s = arg;
	enum end_reason	 why;
	long long	 t;

	if (s->state == SESSION_HEADER) {
		session_close(s, END_BAD_PROXY_HEADER);	/* too late */
		return;
	}
	if ((t = session_timeout(s, &why)) == 0)
		return;
	if (stats_now_ms() - s->last_ms >= t) {
		session_close(s, why);
		return;
	}
	session_timer_arm(s);
}

/*
 * Close the session: the one way out. Resets are passed on, the line is
 * logged, and everything is freed; s is gone when this returns.
 */
void
session_close(struct session *s, enum end_reason why)
{
	struct worker		*w = s->worker;
	struct stats_listener	*st = s->stats;
	struct evbuffer		*buf;
	unsigned long long	 in, out;

	TAILQ_REMOVE(&w->sessions, s, entry);
	if (s->timer != NULL)
		event_free(s->timer);

	/* Bytes in: read from the client; out: written to it. */
	in = s->client.nread;
	out = s->backend.nread;
	if (s->client.bev != NULL) {
		buf = bufferevent_get_input(s->client.bev);
		in += evbuffer_get_length(buf);
		buf = bufferevent_get_output(s->client.bev);
		if (out >= evbuffer_get_length(buf))
			out -= evbuffer_get_length(buf);
	}
	if (s->conf->log_connections != LOG_CONNS_NONE &&
	    ((why != END_DENIED && why != END_LIMIT) || limits_log_refused()))
		session_log_close(s, why, in, out);

	if (why == END_CLIENT_RESET || why == END_ERROR)
		session_reset(&s->backend);
	if (why == END_BACKEND_RESET || why == END_ERROR)
		session_reset(&s->client);
	if (s->client.bev != NULL)
		bufferevent_free(s->client.bev);
	if (s->backend.bev != NULL)
		bufferevent_free(s->backend.bev);
	if (s->chosen != NULL)
		backend_release(s->chosen, s);
	backend_tried_free(&s->tried);
	config_unref(s->conf);
	backend_pool_unref(s->pool);
	/* Free the slots before the listeners hear of it. */
	if (s->source_counted)
		limits_source_release(s->limits,
		    (const struct sockaddr *)&s->client_ss);
	limits_close(s->limits);
	limits_unref(s->limits);
	free(s);

	stats_closed(st, why);
	worker_session_closed(w, why, in, out);
}

/* A logfmt value: as is, or quoted when it holds spaces or quotes. */
static const char *
session_value(const char *v, char *buf, size_t len)
{
	size_t	 i, o = 0;

	if (*v != '\0' && strpbrk(v, " \t\"=\\") == NULL)
		return (v);
	if (len < 3)
		return ("-");
	buf[o++] = '"';
	for (i = 0; v[i] != '\0' && o + 3 < len; i++) {
		if (v[i] == '"' || v[i] == '\\')
			buf[o++] = '\\';
		buf[o++] = v[i];
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return (buf);
}

/* Log that the backend connected (log_connections = all). */
static void
session_log_connect(struct session *s)
{
	char		 line[1024], client[256], cq[300], bq[300];
	char		 f_l[128], f_c[300], f_b[300], f_t[64], f_id[64];
	const char	*fields[5];
	long long	 ms = stats_now_ms() - s->start_ms;

	format_sockaddr((struct sockaddr *)&s->client_ss, s->client_sslen,
	    client, sizeof client);
	snprintf(line, sizeof line, "connect id=%llu listener=%s client=%s "
	    "backend=%s connect_time=%lld.%03lld", s->id, s->lc->name,
	    session_value(client, cq, sizeof cq),
	    session_value(s->chosen->text, bq, sizeof bq), ms / 1000,
	    ms % 1000);
	snprintf(f_l, sizeof f_l, "ACCEPTD_LISTENER=%s", s->lc->name);
	snprintf(f_c, sizeof f_c, "ACCEPTD_CLIENT=%s", client);
	snprintf(f_b, sizeof f_b, "ACCEPTD_BACKEND=%s", s->chosen->text);
	snprintf(f_t, sizeof f_t, "ACCEPTD_CONNECT_TIME=%lld.%03lld",
	    ms / 1000, ms % 1000);
	snprintf(f_id, sizeof f_id, "ACCEPTD_ID=%llu", s->id);
	fields[0] = f_l;
	fields[1] = f_c;
	fields[2] = f_b;
	fields[3] = f_t;
	fields[4] = f_id;
	log_conn(line, fields, nitems(fields));
}

/* Log the connection line of a closing session. */
static void
session_log_close(struct session *s, enum end_reason why,
    unsigned long long in, unsigned long long out)
{
	char		 line[1024], client[256], cq[300], bq[300];
	char		 f_l[128], f_c[300], f_b[300], f_e[64], f_i[64];
	char		 f_o[64], f_d[64], f_id[64];
	const char	*fields[8], *backend = "-", *end;
	long long	 ms = stats_now_ms() - s->start_ms;

	if (s->state == SESSION_RELAYING)
		backend = s->chosen->text;
	end = session_end_name(why);
	format_sockaddr((struct sockaddr *)&s->client_ss, s->client_sslen,
	    client, sizeof client);
	snprintf(line, sizeof line, "conn id=%llu listener=%s client=%s "
	    "backend=%s duration=%lld.%03lld bytes_in=%llu bytes_out=%llu "
	    "end=%s", s->id, s->lc->name, session_value(client, cq, sizeof cq),
	    session_value(backend, bq, sizeof bq), ms / 1000, ms % 1000,
	    in, out, end);
	snprintf(f_l, sizeof f_l, "ACCEPTD_LISTENER=%s", s->lc->name);
	snprintf(f_c, sizeof f_c, "ACCEPTD_CLIENT=%s", client);
	snprintf(f_b, sizeof f_b, "ACCEPTD_BACKEND=%s", backend);
	snprintf(f_e, sizeof f_e, "ACCEPTD_END=%s", end);
	snprintf(f_i, sizeof f_i, "ACCEPTD_BYTES_IN=%llu", in);
	snprintf(f_o, sizeof f_o, "ACCEPTD_BYTES_OUT=%llu", out);
	snprintf(f_d, sizeof f_d, "ACCEPTD_DURATION=%lld.%03lld", ms / 1000,
	    ms % 1000);
	fields[0] = f_l;
	fields[1] = f_c;
	fields[2] = f_b;
	fields[3] = f_e;
	fields[4] = f_i;
	fields[5] = f_o;
	fields[6] = f_d;
	snprintf(f_id, sizeof f_id, "ACCEPTD_ID=%llu", s->id);
	fields[7] = f_id;
	log_conn(line, fields, nitems(fields));
}

/* Client bytes: relay them, or leave them waiting for the backend. */
static void
session_client_read(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	if (s->state == SESSION_HEADER) {
		session_header(s);
		return;
	}
	if (s->state != SESSION_RELAYING)
		return;
	if (session_relay(s, &s->client, &s->backend) == -1)
		session_close(s, END_ERROR);
}

/* The client's output drained. */
static void
session_client_write(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	session_drained(s, &s->backend, &s->client);
}

/* EOF, reset or error on the client. */
static void
session_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct session	*s = arg;
	int		 err = EVUTIL_SOCKET_ERROR();

	session_event(s, &s->client, &s->backend, what, err);
}

/* Backend bytes: relay them to the client. */
static void
session_backend_read(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	if (s->state != SESSION_RELAYING || bev != s->backend.bev)
		return;
	if (session_relay(s, &s->backend, &s->client) == -1)
		session_close(s, END_ERROR);
}

/* The backend's output drained. */
static void
session_backend_write(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	if (bev != s->backend.bev)
		return;
	session_drained(s, &s->client, &s->backend);
}

/*
 * Connected, failed to connect, or EOF/reset/error once relaying. Every
 * failed attempt, at once or later, goes on to the next backend.
 */
static void
session_backend_event(struct bufferevent *bev, short what, void *arg)
{
	struct session	*s = arg;
	int		 err = EVUTIL_SOCKET_ERROR();

	if (bev != s->backend.bev)
		return;
	if (s->state == SESSION_RELAYING) {
		session_event(s, &s->backend, &s->client, what, err);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		session_connected(s);
		return;
	}
	log_debug("%s: listener '%s': backend %s: connect failed: %s",
	    __func__, s->lc->name, s->chosen->text,
	    (what & BEV_EVENT_TIMEOUT) ? "timed out" :
	    evutil_socket_error_to_string(err));
	backend_failed(s->chosen, err, (what & BEV_EVENT_TIMEOUT) != 0, s);
	backend_release(s->chosen, s);
	s->chosen = NULL;
	s->backend.bev = NULL;
	bufferevent_free(bev);
	session_connect(s);
}

/* What a session is doing, for show conns. */
static const char *
session_state_name(const struct session *s)
{
	switch (s->state) {
	case SESSION_HEADER:
		return ("header");
	case SESSION_CONNECTING:
		return ("connecting");
	case SESSION_RELAYING:
		break;
	}
	if (s->client.eof || s->backend.eof)
		return ("half-closed");
	return ("relaying");
}

/* What session_walk gathers on the worker's loop for the caller's. */
struct session_walk_ctx {
	struct session_info	*v;
	char			(*names)[CONF_MAX_NAME + 1];
	size_t			 n;
	int			 oom;
};

/* What session_kill asks of the worker's loop. */
struct session_kill_ctx {
	unsigned long long	 id;
	int			 found;
};

/*
 * Copy what show conns prints of every open connection of the worker,
 * on the worker's loop: its id, addresses, age and bytes so far (as the
 * conn line counts them).
 */
static void
session_walk_copy(struct worker *w, void *arg)
{
	struct session_walk_ctx	*ctx = arg;
	struct session_info	*si;
	struct session		*s;
	struct evbuffer		*buf;
	size_t			 n = 0, pending;
	long long		 now = stats_now_ms();

	TAILQ_FOREACH(s, &w->sessions, entry)
		n++;
	if (n == 0)
		return;
	ctx->v = calloc(n, sizeof *ctx->v);
	ctx->names = calloc(n, sizeof *ctx->names);
	if (ctx->v == NULL || ctx->names == NULL) {
		ctx->oom = 1;
		return;
	}
	TAILQ_FOREACH(s, &w->sessions, entry) {
		si = &ctx->v[ctx->n];
		/* The snapshot may go with the session: copy the name. */
		snprintf(ctx->names[ctx->n], sizeof ctx->names[ctx->n], "%s",
		    s->lc->name);
		si->id = s->id;
		si->listener = ctx->names[ctx->n];
		format_sockaddr((struct sockaddr *)&s->client_ss,
		    s->client_sslen, si->client, sizeof si->client);
		snprintf(si->backend, sizeof si->backend, "%s",
		    s->state == SESSION_RELAYING ? s->chosen->text : "-");
		si->state = session_state_name(s);
		si->age_ms = now - s->start_ms;
		si->bytes_in = s->client.nread;
		si->bytes_out = s->backend.nread;
		if (s->client.bev != NULL) {
			buf = bufferevent_get_input(s->client.bev);
			si->bytes_in += evbuffer_get_length(buf);
			buf = bufferevent_get_output(s->client.bev);
			pending = evbuffer_get_length(buf);
			si->bytes_out -= pending <= si->bytes_out ? pending :
			    si->bytes_out;
		}
		ctx->n++;
	}
}

/*
 * Give each open connection of the worker to fn, on the caller's loop:
 * the worker's loop copies them first (sessions belong to its thread).
 */
void
session_walk(struct worker *w, void (*fn)(const struct session_info *, void *),
    void *arg)
{
	struct session_walk_ctx	 ctx;
	size_t			 i;

	memset(&ctx, 0, sizeof ctx);
	worker_call(w, session_walk_copy, &ctx);
	if (ctx.oom)
		log_warnx("show conns: out of memory");
	for (i = 0; i < ctx.n; i++)
		fn(&ctx.v[i], arg);
	free(ctx.v);
	free(ctx.names);
}

/* Close the connection with the id, on the worker's loop. */
static void
session_kill_one(struct worker *w, void *arg)
{
	struct session_kill_ctx	*ctx = arg;
	struct session		*s;

	TAILQ_FOREACH(s, &w->sessions, entry) {
		if (s->id == ctx->id) {
			session_close(s, END_KILLED);
			ctx->found = 1;
			return;
		}
	}
}

/*
 * acceptctl kill: close the worker's connection with this id at once
 * (end=killed); -1 if it has none.
 */
int
session_kill(struct worker *w, unsigned long long id)
{
	struct session_kill_ctx	 ctx;

	ctx.id = id;
	ctx.found = 0;
	worker_call(w, session_kill_one, &ctx);
	return (ctx.found ? 0 : -1);
}
