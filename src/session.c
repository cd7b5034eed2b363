/*
 * Sessions: one accepted client paired with one backend connection, from
 * the connect and its retries through the relay and the half-closes to the
 * single close that logs the connection line. Each end is a socket with
 * two persistent events, armed only while they are wanted; the bytes in
 * between are relay.c's.
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

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>

#include "acceptd.h"

enum session_state {
	SESSION_HEADER,		/* accept_proxy: reading the header */
	SESSION_CONNECTING,
	SESSION_RELAYING
};

/* One side of a session: its socket and what is watched on it. */
struct session_end {
	int			 fd;		/* -1: none */
	struct event		 rd;		/* EV_READ|EV_PERSIST */
	struct event		 wr;		/* EV_WRITE|EV_PERSIST */
	unsigned char		 rd_on;		/* rd is added */
	unsigned char		 wr_on;		/* wr is added */
	unsigned char		 eof;		/* its FIN was read */
	unsigned char		 shut_wr;	/* peer's FIN passed on */
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
	size_t			 bufcap;	/* capacity of its buffers */

	struct session_end	 client;
	struct session_end	 backend;
	struct relay_dir	 up;		/* client to backend */
	struct relay_dir	 down;		/* backend to client */

	struct sockaddr_storage	 client_ss;	/* or PROXY header's */
	socklen_t		 client_sslen;
	struct sockaddr_storage	 local_ss;	/* where it came in */
	socklen_t		 local_sslen;
	int			 local_known;	/* local_ss was looked up */
	struct limits		*limits;	/* holds a slot in it */
	int			 source_counted; /* max_connections_per_ip */
	struct event		 timer;		/* header, idle, fin */
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
static void	 session_header(struct session *);
static int	 session_send_proxy(struct session *);
static void	 session_connect(struct session *);
static int	 session_socket(struct session *, const struct backend *,
		     int *);
static void	 session_connect_done(struct session *, short);
static void	 session_connected(struct session *);
static enum end_reason session_flow(struct session *, struct session_end *,
		     struct session_end *, struct relay_dir *, int);
static void	 session_step(struct session *, struct session_end *,
		     struct session_end *, struct relay_dir *, int);
static enum end_reason session_io_error(struct session *,
		     struct session_end *, int);
static int	 session_watch(struct session_end *, short, int);
static void	 session_end_close(struct session_end *);
static int	 session_done(struct session *);
static void	 session_reset(struct session_end *);
static long long session_timeout(struct session *, enum end_reason *);
static void	 session_timer_arm(struct session *);
static void	 session_timer(evutil_socket_t, short, void *);
static const char *session_value(const char *, char *, size_t);
static void	 session_log_connect(struct session *);
static void	 session_log_close(struct session *, enum end_reason,
		     unsigned long long, unsigned long long);
static void	 session_client_read(evutil_socket_t, short, void *);
static void	 session_client_write(evutil_socket_t, short, void *);
static void	 session_backend_read(evutil_socket_t, short, void *);
static void	 session_backend_write(evutil_socket_t, short, void *);
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
	s->start_ms = s->last_ms = s->start_us / 1000;
	/* Room for a whole PROXY header, and for one sent in front. */
	s->bufcap = lc->buffer_size;
	if (lc->accept_proxy && s->bufcap < PROXYPROTO_MAX)
		s->bufcap = PROXYPROTO_MAX;
	s->bufcap += RELAY_SLACK;
	if (salen > sizeof s->client_ss)
		salen = sizeof s->client_ss;
	memcpy(&s->client_ss, sa, salen);
	s->client_sslen = salen;
	s->client.fd = s->backend.fd = -1;
	relay_dir_init(&s->up);
	relay_dir_init(&s->down);
	evtimer_assign(&s->timer, w->base, session_timer, s);
	TAILQ_INSERT_TAIL(&w->sessions, s, entry);
	worker_session_opened(w);
	stats_opened(s->stats);

	/* With accept_proxy, the peer is checked now, the client later. */
	if ((why = session_admit(s, !lc->accept_proxy)) != END_MAX) {
		close(fd);
		session_close(s, why);
		return;
	}

	s->client.fd = fd;
	event_assign(&s->client.rd, w->base, fd, EV_READ|EV_PERSIST,
	    session_client_read, s);
	event_assign(&s->client.wr, w->base, fd, EV_WRITE|EV_PERSIST,
	    session_client_write, s);
	/* Client bytes are read (up to buffer_size) while it connects. */
	if (session_watch(&s->client, EV_READ, 1) == -1) {
		session_close(s, END_ERROR);
		return;
	}
	if (!lc->accept_proxy) {
		session_connect(s);
		return;
	}

	/* The header must come whole within connect_timeout. */
	s->state = SESSION_HEADER;
	tv.tv_sec = lc->connect_timeout_ms / 1000;
	tv.tv_usec = (lc->connect_timeout_ms % 1000) * 1000;
	evtimer_add(&s->timer, &tv);
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

/*
 * accept_proxy: read until the PROXY header is whole, then parse it. Its
 * client address replaces the peer's for everything after (lists, caps,
 * logs, balancing, send_proxy); what follows it waits for the backend. A
 * bad header closes the client before any backend is contacted.
 */
static void
session_header(struct session *s)
{
	struct relay_dir	*d = &s->up;
	struct proxyproto	 pp;
	const char		*why;
	char			 peer[256];
	enum end_reason		 end;
	size_t			 len, used, max;
	ssize_t			 n;
	int			 r;

	max = s->bufcap - RELAY_SLACK;
	if (relay_dir_room(d, max) == 0) {
		session_close(s, END_BAD_PROXY_HEADER);	/* cannot be whole */
		return;
	}
	n = relay_dir_read(s->worker->relay, d, s->client.fd,
	    relay_dir_room(d, max), s->bufcap, 0);
	if (n == 0) {
		session_close(s, END_BAD_PROXY_HEADER);	/* it hung up */
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			session_close(s, session_io_error(s, &s->client,
			    errno));
		return;
	}
	if ((len = d->len) > PROXYPROTO_MAX)
		len = PROXYPROTO_MAX;
	r = proxyproto_decode((const uint8_t *)d->buf + d->off, len, &pp,
	    &used, &why);
	if (r == 0)
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
	d->off += used;
	d->len -= used;
	if (!pp.local) {
		memcpy(&s->client_ss, &pp.src, pp.srclen);
		s->client_sslen = pp.srclen;
		memcpy(&s->local_ss, &pp.dst, pp.dstlen);
		s->local_sslen = pp.dstlen;
		s->local_known = 1;
	}
	if ((end = session_admit(s, 1)) != END_MAX) {
		session_close(s, end);
		return;
	}
	/* What came after the header is the client's first bytes. */
	d->nin = d->len;
	stats_bytes(s->stats, d->len, 0);
	evtimer_del(&s->timer);
	if (session_watch(&s->client, EV_READ,
	    relay_dir_room(d, s->lc->buffer_size) != 0) == -1) {
		session_close(s, END_ERROR);
		return;
	}
	s->state = SESSION_CONNECTING;
	session_connect(s);
}

/* send_proxy: the PROXY header goes to the backend before any byte. */
static int
session_send_proxy(struct session *s)
{
	uint8_t	 buf[PROXYPROTO_ENCODE_MAX];
	int	 n;

	if (!s->local_known) {
		s->local_sslen = sizeof s->local_ss;
		if (getsockname(s->client.fd, (struct sockaddr *)&s->local_ss,
		    &s->local_sslen) == -1)
			s->local_sslen = 0;
		s->local_known = 1;
	}
	n = proxyproto_encode(s->lc->send_proxy,
	    (const struct sockaddr *)&s->client_ss,
	    s->local_sslen == 0 ? NULL : (const struct sockaddr *)&s->local_ss,
	    buf, sizeof buf);
	if (n == -1)
		return (-1);
	return (relay_dir_prepend(s->worker->relay, &s->up, buf, (size_t)n,
	    s->bufcap));
}

/*
 * Connect to the backend the pool chooses (balance, skipping backends
 * that are down or that this connection tried). A connect that fails at
 * once is retried here directly, one that fails later from its write
 * event; the client's bytes wait in the up buffer meanwhile. The source
 * balance hashes client_ss, the PROXY header's client if any.
 */
static void
session_connect(struct session *s)
{
	struct session_end	*e = &s->backend;
	struct backend		*b = NULL;
	struct timeval		 tv;
	int			 err, fd;

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

		if ((fd = session_socket(s, b, &err)) != -1) {
			e->fd = fd;
			event_assign(&e->rd, s->worker->base, fd,
			    EV_READ|EV_PERSIST, session_backend_read, s);
			event_assign(&e->wr, s->worker->base, fd,
			    EV_WRITE|EV_PERSIST, session_backend_write, s);
			/* Writable: connected or failed; or timed out. */
			tv.tv_sec = s->lc->connect_timeout_ms / 1000;
			tv.tv_usec = (s->lc->connect_timeout_ms % 1000) * 1000;
			if (event_add(&e->wr, &tv) == -1) {
				session_close(s, END_ERROR);
				return;
			}
			e->wr_on = 1;
			return;
		}
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

/*
 * A non-blocking socket connecting to the backend, with the listener's
 * TCP options; -1 with *err if it failed at once.
 */
static int
session_socket(struct session *s, const struct backend *b, int *err)
{
	int	 fd, one = 1;

	fd = socket(b->ss.ss_family, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		*err = errno;
		return (-1);
	}
	if (b->ss.ss_family != AF_UNIX) {
		if (s->lc->nodelay)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
			    sizeof one);
		if (s->lc->keepalive)
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one,
			    sizeof one);
	}
	if (connect(fd, (const struct sockaddr *)&b->ss, b->sslen) == 0 ||
	    errno == EINPROGRESS || errno == EINTR)
		return (fd);
	*err = errno;
	close(fd);
	return (-1);
}

/*
 * The backend socket became writable or the connect timed out: relay if
 * it connected, else count the failure and try the next backend.
 */
static void
session_connect_done(struct session *s, short what)
{
	socklen_t	 len = sizeof (int);
	int		 err = 0, timedout = (what & EV_TIMEOUT) != 0;

	if (timedout)
		err = ETIMEDOUT;
	else if (getsockopt(s->backend.fd, SOL_SOCKET, SO_ERROR, &err,
	    &len) == -1)
		err = errno;
	if (err == 0) {
		session_connected(s);
		return;
	}
	log_debug("%s: listener '%s': backend %s: connect failed: %s",
	    __func__, s->lc->name, s->chosen->text,
	    timedout ? "timed out" : evutil_socket_error_to_string(err));
	backend_failed(s->chosen, err, timedout, s);
	backend_release(s->chosen, s);
	s->chosen = NULL;
	session_end_close(&s->backend);
	session_connect(s);
}

/* The backend answered: relay what the client sent so far, and go on. */
static void
session_connected(struct session *s)
{
	backend_connected(s->chosen, s);
	stats_connected(s->stats, stats_now_us() - s->start_us);
	s->state = SESSION_RELAYING;
	/* Drop the connect timeout; the flow re-adds it when wanted. */
	event_del(&s->backend.wr);
	s->backend.wr_on = 0;
	if (s->conf->log_connections == LOG_CONNS_ALL)
		session_log_connect(s);
	s->last_ms = stats_now_ms();
	if (s->lc->send_proxy != SEND_PROXY_NONE &&
	    session_send_proxy(s) == -1) {
		session_close(s, END_ERROR);
		return;
	}
	if (session_watch(&s->backend, EV_READ, 1) == -1) {
		session_close(s, END_ERROR);
		return;
	}
	session_timer_arm(s);
	/* Write what waits (and a FIN the client sent meanwhile). */
	session_step(s, &s->client, &s->backend, &s->up, 0);
}

/*
 * Move bytes from one end to the other until neither can go on now: read
 * while there is room (at most RELAY_READS_MAX times, to be fair to other
 * connections) and write while the sink takes them. Reads splice when the
 * listener asks for it and the session relays. Returns END_MAX, or why
 * the session must close.
 */
static enum end_reason
session_flow(struct session *s, struct session_end *from,
    struct session_end *to, struct relay_dir *d, int readable)
{
	struct relay_pool	*p = s->worker->relay;
	size_t			 limit = s->lc->buffer_size, room;
	int			 relaying = (s->state == SESSION_RELAYING);
	int			 can_write = relaying, reads = 0, moved = 0;
	int			 try_read, progress;
	int			 splice_ok = relaying && s->lc->splice;
	ssize_t			 n;

	/* A paused source may have more by now: a write makes room. */
	try_read = (readable || !from->rd_on) && !from->eof;
	for (;;) {
		progress = 0;
		if (try_read && reads < RELAY_READS_MAX &&
		    (room = relay_dir_room(d, limit)) != 0) {
			n = relay_dir_read(p, d, from->fd, room, s->bufcap,
			    splice_ok);
			if (n > 0) {
				reads++;
				progress = moved = 1;
				d->nin += (size_t)n;
				if (from == &s->client)
					stats_bytes(s->stats, (size_t)n, 0);
				/* Short: the socket is empty, no need to ask. */
				if ((size_t)n < room && d->inpipe == 0)
					try_read = 0;
			} else if (n == 0) {
				from->eof = 1;
				try_read = 0;
				if (s->first_fin == -1)
					s->first_fin = from == &s->client ?
					    END_CLIENT_FIN : END_BACKEND_FIN;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK)
				try_read = 0;
			else
				return (session_io_error(s, from, errno));
		}
		if (can_write && relay_dir_pending(d) != 0) {
			if ((n = relay_dir_write(d, to->fd)) == -1)
				return (session_io_error(s, to, errno));
			if (n > 0) {
				progress = moved = 1;
				d->nout += (size_t)n;
				if (to == &s->client)
					stats_bytes(s->stats, 0, (size_t)n);
			}
			if (relay_dir_pending(d) != 0)
				can_write = 0;
		}
		/* Go on while reading may get more and something moved. */
		if (!try_read || reads == RELAY_READS_MAX || !progress)
			break;
	}
	if (moved)
		s->last_ms = stats_now_ms();
	relay_dir_idle(p, d);
	if (from->eof && relaying && relay_dir_pending(d) == 0 &&
	    !to->shut_wr) {
		/*
		 * Everything is delivered: pass the FIN on. When it is the
		 * last one, the close that follows sends it.
		 */
		to->shut_wr = 1;
		if (!(to->eof && from->shut_wr))
			shutdown(to->fd, SHUT_WR);
	}
	if (session_watch(from, EV_READ, !from->eof &&
	    relay_dir_room(d, limit) != 0) == -1)
		return (END_ERROR);
	/* While connecting, the backend's write event is the connect's. */
	if (relaying && session_watch(to, EV_WRITE,
	    relay_dir_pending(d) != 0) == -1)
		return (END_ERROR);
	return (END_MAX);
}

/*
 * Run the flow one way, then close if it failed or both ways are done;
 * a FIN read starts fin_timeout.
 */
static void
session_step(struct session *s, struct session_end *from,
    struct session_end *to, struct relay_dir *d, int readable)
{
	enum end_reason	 why;
	int		 eof = from->eof;

	if ((why = session_flow(s, from, to, d, readable)) != END_MAX) {
		session_close(s, why);
		return;
	}
	if (session_done(s)) {
		session_close(s, (enum end_reason)s->first_fin);
		return;
	}
	if (from->eof && !eof && s->state == SESSION_RELAYING)
		session_timer_arm(s);
}

/*
 * A read or write on an end failed: a reset (or a write to an end that
 * is gone) is passed on as a reset, anything else is an error.
 */
static enum end_reason
session_io_error(struct session *s, struct session_end *e, int err)
{
	int	 is_client = (e == &s->client);

	if (err == ECONNRESET || err == EPIPE)
		return (is_client ? END_CLIENT_RESET : END_BACKEND_RESET);
	log_info("listener '%s': %s connection: %s", s->lc->name,
	    is_client ? "client" : "backend", strerror(err));
	return (END_ERROR);
}

/* Watch an end for reading or writing, or stop; only changes cost. */
static int
session_watch(struct session_end *e, short which, int want)
{
	unsigned char	*on = which == EV_READ ? &e->rd_on : &e->wr_on;
	struct event	*ev = which == EV_READ ? &e->rd : &e->wr;

	want = want != 0;
	if (*on == want)
		return (0);
	if ((want ? event_add(ev, NULL) : event_del(ev)) == -1)
		return (-1);
	*on = (unsigned char)want;
	return (0);
}

/* Stop watching an end and close its socket. */
static void
session_end_close(struct session_end *e)
{
	if (e->fd == -1)
		return;
	event_del(&e->rd);
	event_del(&e->wr);
	close(e->fd);
	e->fd = -1;
	e->rd_on = e->wr_on = 0;
}

/* Are both directions finished: FIN read and passed on, both ways? */
static int
session_done(struct session *s)
{
	return (s->client.eof && s->backend.shut_wr &&
	    s->backend.eof && s->client.shut_wr);
}

/* Make closing this end send a reset (SO_LINGER 0). */
static void
session_reset(struct session_end *e)
{
	struct linger	 lg = { 1, 0 };

	if (e->fd != -1)
		setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
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
		evtimer_del(&s->timer);
		return;
	}
	left = s->last_ms + t - stats_now_ms();
	if (left < 0)
		left = 0;
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	evtimer_add(&s->timer, &tv);
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
	unsigned long long	 in, out;

	TAILQ_REMOVE(&w->sessions, s, entry);
	evtimer_del(&s->timer);

	/* Bytes in: read from the client; out: written to it. */
	in = s->up.nin;
	out = s->down.nout;
	if (s->conf->log_connections != LOG_CONNS_NONE &&
	    ((why != END_DENIED && why != END_LIMIT) || limits_log_refused()))
		session_log_close(s, why, in, out);

	if (why == END_CLIENT_RESET || why == END_ERROR)
		session_reset(&s->backend);
	if (why == END_BACKEND_RESET || why == END_ERROR)
		session_reset(&s->client);
	session_end_close(&s->client);
	session_end_close(&s->backend);
	relay_dir_free(w->relay, &s->up);
	relay_dir_free(w->relay, &s->down);
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
	if (!log_journal()) {
		log_conn(line, NULL, 0);	/* the fields are the journal's */
		return;
	}
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
	if (!log_journal()) {
		log_conn(line, NULL, 0);	/* the fields are the journal's */
		return;
	}
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

/* Client readable: the PROXY header, or bytes to relay (or to keep). */
static void
session_client_read(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	if (s->state == SESSION_HEADER) {
		session_header(s);
		return;
	}
	session_step(s, &s->client, &s->backend, &s->up, 1);
}

/* The client takes more: write what the backend sent. */
static void
session_client_write(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	session_step(s, &s->backend, &s->client, &s->down, 0);
}

/* Backend readable: relay to the client. */
static void
session_backend_read(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	session_step(s, &s->backend, &s->client, &s->down, 1);
}

/* Backend writable: the connect finished, or it takes more. */
static void
session_backend_write(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	if (s->state != SESSION_RELAYING) {
		session_connect_done(s, what);
		return;
	}
	session_step(s, &s->client, &s->backend, &s->up, 0);
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
	size_t			 n = 0;
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
		si->bytes_in = s->up.nin;
		si->bytes_out = s->down.nout;
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
