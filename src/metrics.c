/*
 * Metrics: GET /metrics in the Prometheus text format, served by evhttp on
 * the main loop.
 *
 * Each answer is built whole from a stats snapshot and handed to evhttp,
 * which writes it from a buffer: a slow scraper only holds its own
 * connection. Connections are few and short-lived: at METRICS_MAX_CONNS
 * the listening sockets stop accepting (the kernel's backlog holds new
 * scrapers), and evhttp drops a connection that stays silent for
 * METRICS_TIMEOUT_SEC.
 *
 * evhttp in libevent 2.1 has no connection cap nor accept hook, so the
 * connections are counted here: each one is met when evhttp asks for its
 * bufferevent, and followed to its end by evhttp's close callback, set once
 * its first bytes arrive (the bufferevent's callbacks carry evhttp's
 * connection then). One that never sends a byte is closed by evhttp's
 * timeout, so it is forgotten a little after that.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "acceptd.h"

/* Scrape connections at once; more wait in the kernel's backlog. */
#define METRICS_MAX_CONNS	8
/* A connection silent (or not reading) for this long is closed. */
#define METRICS_TIMEOUT_SEC	5
/* The cap is logged at most this often. */
#define METRICS_LOG_SEC		60
/* Longest request head accepted. */
#define METRICS_MAX_HEADERS	8192
#define METRICS_BACKLOG		16
#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

/* One scrape connection, from evhttp's accept to its close. */
struct metrics_conn {
	TAILQ_ENTRY(metrics_conn) entry;
	struct metrics		*m;
	struct bufferevent	*bev;		/* until its first bytes */
	struct evbuffer_cb_entry *read_cb;
	struct evhttp_connection *evcon;	/* once they came */
	long long		 accepted_ms;
};
TAILQ_HEAD(metrics_conn_list, metrics_conn);

struct metrics {
	struct event_base	*base;
	struct evhttp		*http;
	char			*address;	/* as configured */
	struct evconnlistener	*evl[2];	/* "*:port" makes two */
	size_t			 nevl;
	struct metrics_conn_list conns;
	size_t			 nconns;
	int			 paused;	/* at METRICS_MAX_CONNS */
	long long		 paused_logged;	/* monotonic ms, 0: never */
	int			 freeing;
	struct event		*sweep;
	const struct stats_source *src;
};

static int	 metrics_bind(struct metrics *, const struct sockaddr *,
		     socklen_t, const char *, char **);
static struct bufferevent *metrics_new_bev(struct event_base *, void *);
static void	 metrics_first_bytes(struct evbuffer *,
		     const struct evbuffer_cb_info *, void *);
static void	 metrics_conn_closed(struct evhttp_connection *, void *);
static void	 metrics_conn_free(struct metrics_conn *);
static void	 metrics_accepting(struct metrics *);
static void	 metrics_sweep(evutil_socket_t, short, void *);
static void	 metrics_request(struct evhttp_request *, void *);
static void	 metrics_label(struct evbuffer *, const char *);
static void	 metrics_head(struct evbuffer *, const char *, const char *,
		     const char *);
static void	 metrics_write(struct evbuffer *,
		     const struct stats_snapshot *);
static void	 metrics_listener(struct evbuffer *, const char *,
		     const struct stats_listener_snap *);
static void	 metrics_per_listener(struct evbuffer *,
		     const struct stats_snapshot *, const char *, const char *,
		     const char *, size_t, int);
static void	 metrics_histogram(struct evbuffer *,
		     const struct stats_listener_snap *);
static void	 metrics_write_listeners(struct evbuffer *,
		     const struct stats_snapshot *);
static void	 metrics_per_backend(struct evbuffer *,
		     const struct stats_snapshot *, const char *, const char *,
		     const char *, size_t, int);
static void	 metrics_write_backends(struct evbuffer *,
		     const struct stats_snapshot *);

/*
 * Serve metrics at address ("HOST:PORT", "[V6]:PORT" or "*:PORT") on the
 * main loop. Returns NULL with *cause set when it cannot listen.
 */
struct metrics *
metrics_start(struct event_base *base, const char *address,
    const struct stats_source *src, char **cause)
{
	struct metrics		*m;
	struct address		 a;
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct timeval		 tv = { 1, 0 };
	char			*why;

	if (parse_address(address, PARSE_ADDRESS_LISTEN, &a, &why) == -1) {
		xasprintf(cause, "metrics: %s", why);
		free(why);
		return (NULL);
	}
	m = xcalloc(1, sizeof *m);
	m->base = base;
	m->src = src;
	m->address = xstrdup(address);
	TAILQ_INIT(&m->conns);
	if ((m->http = evhttp_new(base)) == NULL) {
		xasprintf(cause, "metrics: cannot create the HTTP server");
		goto fail;
	}
	evhttp_set_gencb(m->http, metrics_request, m);
	evhttp_set_bevcb(m->http, metrics_new_bev, m);
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET|EVHTTP_REQ_HEAD);
	evhttp_set_timeout(m->http, METRICS_TIMEOUT_SEC);
	evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(m->http, 0);

	switch (a.kind) {
	case ADDRESS_INET:
		if (metrics_bind(m, (struct sockaddr *)&a.ss, a.sslen, a.text,
		    cause) == -1)
			goto fail;
		break;
	case ADDRESS_ANY:
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
		sin.sin_port = htons(a.port);
		if (metrics_bind(m, (struct sockaddr *)&sin, sizeof sin,
		    a.text, cause) == -1)
			goto fail;
		memset(&sin6, 0, sizeof sin6);
		sin6.sin6_family = AF_INET6;
		sin6.sin6_addr = in6addr_any;
		sin6.sin6_port = htons(a.port);
		if (metrics_bind(m, (struct sockaddr *)&sin6, sizeof sin6,
		    a.text, cause) == -1 && errno != EAFNOSUPPORT)
			goto fail;
		if (m->nevl == 1) {
			free(*cause);	/* no IPv6 here: 0.0.0.0 only */
			*cause = NULL;
		}
		break;
	default:
		/* evhttp 2.1 exits on a peer getnameinfo cannot name. */
		xasprintf(cause, "metrics: cannot serve on %s: an IP address "
		    "and port are needed", address);
		goto fail;
	}
	if ((m->sweep = event_new(base, -1, EV_PERSIST, metrics_sweep,
	    m)) == NULL || event_add(m->sweep, &tv) == -1) {
		xasprintf(cause, "metrics: cannot create a timer");
		goto fail;
	}
	address_free(&a);
	log_info("metrics: serving GET /metrics on %s", address);
	return (m);

 fail:
	address_free(&a);
	metrics_free(m);
	return (NULL);
}

/* Bind and listen on one address and give the socket to evhttp. */
static int
metrics_bind(struct metrics *m, const struct sockaddr *sa, socklen_t salen,
    const char *text, char **cause)
{
	struct evconnlistener	*evl;
	struct evhttp_bound_socket *bound;
	int			 fd, one = 1, saved_errno;

	fd = socket(sa->sa_family, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1)
		goto fail;
	if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof one) == -1)
		goto fail;
	if (bind(fd, sa, salen) == -1 || listen(fd, METRICS_BACKLOG) == -1)
		goto fail;
	evl = evconnlistener_new(m->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (evl == NULL)
		goto fail;
	/* evhttp owns the listener (and the socket) from here on. */
	if ((bound = evhttp_bind_listener(m->http, evl)) == NULL) {
		evconnlistener_free(evl);
		xasprintf(cause, "metrics: cannot serve on %s", text);
		return (-1);
	}
	m->evl[m->nevl++] = evl;
	return (0);

 fail:
	saved_errno = errno;
	if (fd != -1)
		close(fd);
	xasprintf(cause, "metrics: cannot listen on %s: %s", text,
	    strerror(saved_errno));
	errno = saved_errno;
	return (-1);
}

/* Stop serving: close the sockets and every scrape connection. */
void
metrics_free(struct metrics *m)
{
	struct metrics_conn	*mc;

	if (m == NULL)
		return;
	m->freeing = 1;
	if (m->sweep != NULL)
		event_free(m->sweep);
	/* Closes the connections (their close callbacks run) and sockets. */
	if (m->http != NULL)
		evhttp_free(m->http);
	while ((mc = TAILQ_FIRST(&m->conns)) != NULL)
		metrics_conn_free(mc);
	free(m->address);
	free(m);
}

/* The address it serves on, as configured. */
const char *
metrics_address(const struct metrics *m)
{
	return (m->address);
}

/*
 * evhttp accepted a connection and wants its bufferevent: count the
 * connection, and watch for its first bytes. NULL lets evhttp make one
 * itself (out of memory: that connection is not counted).
 */
static struct bufferevent *
metrics_new_bev(struct event_base *base, void *arg)
{
	struct metrics		*m = arg;
	struct metrics_conn	*mc;

	if ((mc = calloc(1, sizeof *mc)) == NULL)
		return (NULL);
	mc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (mc->bev == NULL) {
		free(mc);
		return (NULL);
	}
	mc->read_cb = evbuffer_add_cb(bufferevent_get_input(mc->bev),
	    metrics_first_bytes, mc);
	if (mc->read_cb == NULL) {
		bufferevent_free(mc->bev);
		free(mc);
		return (NULL);
	}
	mc->m = m;
	mc->accepted_ms = stats_now_ms();
	TAILQ_INSERT_TAIL(&m->conns, mc, entry);
	m->nconns++;
	metrics_accepting(m);
	return (mc->bev);
}

/*
 * The first bytes of a connection arrived: evhttp's connection is the
 * argument of the bufferevent's callbacks now, so follow it to its close.
 */
static void
metrics_first_bytes(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct metrics_conn	*mc = arg;
	void			*evcon = NULL;

	if (info->n_added == 0 || mc->evcon != NULL)
		return;
	bufferevent_getcb(mc->bev, NULL, NULL, NULL, &evcon);
	if (evcon == NULL)
		return;
	mc->evcon = evcon;
	evhttp_connection_set_closecb(mc->evcon, metrics_conn_closed, mc);
	evbuffer_remove_cb_entry(buf, mc->read_cb);
	mc->read_cb = NULL;
	mc->bev = NULL;
}

/* evhttp closes a connection. */
static void
metrics_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct metrics_conn	*mc = arg;

	evhttp_connection_set_closecb(evcon, NULL, NULL);
	metrics_conn_free(mc);
}

/* Forget a connection, and accept again below the cap. */
static void
metrics_conn_free(struct metrics_conn *mc)
{
	struct metrics	*m = mc->m;

	TAILQ_REMOVE(&m->conns, mc, entry);
	m->nconns--;
	free(mc);
	if (!m->freeing)
		metrics_accepting(m);
}

/* Accept while below METRICS_MAX_CONNS; stop at it. */
static void
metrics_accepting(struct metrics *m)
{
	long long	 now;
	size_t		 i;
	int		 full = m->nconns >= METRICS_MAX_CONNS;

	if (full == m->paused)
		return;
	m->paused = full;
	for (i = 0; i < m->nevl; i++) {
		if (full)
			evconnlistener_disable(m->evl[i]);
		else
			evconnlistener_enable(m->evl[i]);
	}
	now = stats_now_ms();
	if (full && (m->paused_logged == 0 ||
	    now - m->paused_logged >= METRICS_LOG_SEC * 1000)) {
		log_info("metrics: %d scrape connections open: not accepting "
		    "more until one closes", METRICS_MAX_CONNS);
		m->paused_logged = now;
	}
}

/*
 * Forget the connections that never sent a byte once evhttp's timeout
 * has closed them (their bufferevent is gone: it is not touched).
 */
static void
metrics_sweep(evutil_socket_t fd, short events, void *arg)
{
	struct metrics		*m = arg;
	struct metrics_conn	*mc, *next;
	long long		 limit;

	limit = stats_now_ms() - (METRICS_TIMEOUT_SEC + 2) * 1000;
	for (mc = TAILQ_FIRST(&m->conns); mc != NULL; mc = next) {
		next = TAILQ_NEXT(mc, entry);
		if (mc->evcon == NULL && mc->accepted_ms < limit)
			metrics_conn_free(mc);
	}
}

/* Answer a request: /metrics, or 404. */
static void
metrics_request(struct evhttp_request *req, void *arg)
{
	struct metrics		*m = arg;
	struct stats_snapshot	*snap;
	struct evbuffer		*body;
	const char		*uri = evhttp_request_get_uri(req);
	const char		*path;
	struct evhttp_uri	*u = NULL;

	if (uri == NULL) {
		evhttp_send_error(req, HTTP_BADREQUEST, NULL);
		return;
	}
	if ((u = evhttp_uri_parse(uri)) == NULL ||
	    (path = evhttp_uri_get_path(u)) == NULL ||
	    strcmp(path, "/metrics") != 0) {
		if (u != NULL)
			evhttp_uri_free(u);
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	evhttp_uri_free(u);
	if ((body = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	if ((snap = stats_snapshot(m->src)) == NULL) {
		evbuffer_free(body);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	metrics_write(body, snap);
	stats_snapshot_free(snap);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

/* A label value, escaped as the text format asks (\\, \", \n). */
static void
metrics_label(struct evbuffer *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\')
			evbuffer_add(b, "\\\\", 2);
		else if (*v == '"')
			evbuffer_add(b, "\\\"", 2);
		else if (*v == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, v, 1);
	}
}

/* The HELP and TYPE lines of a metric. */
static void
metrics_head(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

/* The whole exposition. */
static void
metrics_write(struct evbuffer *b, const struct stats_snapshot *snap)
{
	metrics_head(b, "acceptd_build_info", "gauge",
	    "Always 1; the version of acceptd in a label.");
	evbuffer_add_printf(b, "acceptd_build_info{version=\"%s\"} 1\n",
	    PACKAGE_VERSION);
	metrics_head(b, "acceptd_start_time_seconds", "gauge",
	    "When acceptd started, in seconds since the Unix epoch.");
	evbuffer_add_printf(b, "acceptd_start_time_seconds %lld.%03lld\n",
	    snap->start_ms / 1000, snap->start_ms % 1000);
	metrics_head(b, "acceptd_connections_active", "gauge",
	    "Client connections open now, all listeners together.");
	evbuffer_add_printf(b, "acceptd_connections_active %lld\n",
	    snap->active);
	metrics_head(b, "acceptd_connections_max", "gauge",
	    "The global cap on client connections (max_connections).");
	evbuffer_add_printf(b, "acceptd_connections_max %lld\n", snap->cap);
	metrics_head(b, "acceptd_reloads_total", "counter",
	    "Configuration reloads (SIGHUP or acceptctl reload) by result.");
	evbuffer_add_printf(b, "acceptd_reloads_total{result=\"ok\"} %llu\n"
	    "acceptd_reloads_total{result=\"failed\"} %llu\n",
	    snap->reloads_ok, snap->reloads_failed);
	metrics_head(b, "acceptd_log_dropped_lines_total", "counter",
	    "Log lines dropped because the log sink was too slow.");
	evbuffer_add_printf(b, "acceptd_log_dropped_lines_total %llu\n",
	    snap->log_dropped);
	metrics_write_listeners(b, snap);
	metrics_write_backends(b, snap);
}

/* The start of a sample line of a listener: name{listener="x". */
static void
metrics_listener(struct evbuffer *b, const char *name,
    const struct stats_listener_snap *ls)
{
	evbuffer_add_printf(b, "%s{listener=\"", name);
	metrics_label(b, ls->name);
	evbuffer_add(b, "\"", 1);
}

/* A listener's metric with one value per listener. */
static void
metrics_per_listener(struct evbuffer *b, const struct stats_snapshot *snap,
    const char *name, const char *type, const char *help, size_t off,
    int is_size)
{
	const struct stats_listener_snap	*ls;
	const char				*p;
	size_t					 i;

	metrics_head(b, name, type, help);
	for (i = 0; i < snap->nlisteners; i++) {
		ls = &snap->listeners[i];
		p = (const char *)ls + off;
		metrics_listener(b, name, ls);
		if (is_size)
			evbuffer_add_printf(b, "} %zu\n", *(const size_t *)p);
		else
			evbuffer_add_printf(b, "} %llu\n",
			    *(const unsigned long long *)p);
	}
}

/* A listener's connect duration histogram. */
static void
metrics_histogram(struct evbuffer *b, const struct stats_listener_snap *ls)
{
	unsigned long long	 cum = 0;
	size_t			 j;
	char			 le[32];

	for (j = 0; j <= STATS_BUCKETS; j++) {
		cum += ls->buckets[j];
		if (j < STATS_BUCKETS)
			snprintf(le, sizeof le, "%g", stats_bucket_bound(j));
		else
			snprintf(le, sizeof le, "+Inf");
		metrics_listener(b,
		    "acceptd_listener_connect_duration_seconds_bucket", ls);
		evbuffer_add_printf(b, ",le=\"%s\"} %llu\n", le, cum);
	}
	metrics_listener(b, "acceptd_listener_connect_duration_seconds_sum",
	    ls);
	evbuffer_add_printf(b, "} %llu.%06llu\n", ls->connect_sum_us / 1000000,
	    ls->connect_sum_us % 1000000);
	metrics_listener(b, "acceptd_listener_connect_duration_seconds_count",
	    ls);
	evbuffer_add_printf(b, "} %llu\n", ls->connect_count);
}

/* Per listener: connections, bytes, connect durations, pauses. */
static void
metrics_write_listeners(struct evbuffer *b, const struct stats_snapshot *snap)
{
	const struct stats_listener_snap	*ls;
	size_t					 i, j;

	metrics_per_listener(b, snap, "acceptd_listener_sockets", "gauge",
	    "Listening sockets of the listener.",
	    offsetof(struct stats_listener_snap, sockets), 1);
	metrics_head(b, "acceptd_listener_connections_active", "gauge",
	    "Client connections of the listener open now.");
	for (i = 0; i < snap->nlisteners; i++) {
		ls = &snap->listeners[i];
		metrics_listener(b, "acceptd_listener_connections_active", ls);
		evbuffer_add_printf(b, "} %lld\n", ls->active);
	}
	metrics_head(b, "acceptd_listener_connections_total", "counter",
	    "Client connections closed, by what ended them (the end= of the "
	    "conn line).");
	for (i = 0; i < snap->nlisteners; i++) {
		ls = &snap->listeners[i];
		for (j = 0; j < END_MAX; j++) {
			metrics_listener(b,
			    "acceptd_listener_connections_total", ls);
			evbuffer_add_printf(b, ",end=\"%s\"} %llu\n",
			    session_end_name((enum end_reason)j), ls->ends[j]);
		}
	}
	metrics_per_listener(b, snap, "acceptd_listener_received_bytes_total",
	    "counter", "Bytes received from clients and relayed to backends.",
	    offsetof(struct stats_listener_snap, bytes_in), 0);
	metrics_per_listener(b, snap, "acceptd_listener_sent_bytes_total",
	    "counter", "Bytes received from backends and relayed to clients.",
	    offsetof(struct stats_listener_snap, bytes_out), 0);
	metrics_head(b, "acceptd_listener_connect_duration_seconds",
	    "histogram", "From accepting a client to its backend connection "
	    "being made, retries included.");
	for (i = 0; i < snap->nlisteners; i++)
		metrics_histogram(b, &snap->listeners[i]);
	metrics_per_listener(b, snap, "acceptd_listener_capped_sockets",
	    "gauge", "Listening sockets not accepting now: at "
	    "max_connections.",
	    offsetof(struct stats_listener_snap, capped), 1);
	metrics_per_listener(b, snap, "acceptd_listener_cap_pauses_total",
	    "counter", "Times a listening socket stopped accepting at "
	    "max_connections.",
	    offsetof(struct stats_listener_snap, cap_pauses), 0);
	metrics_per_listener(b, snap, "acceptd_listener_backoff_sockets",
	    "gauge", "Listening sockets not accepting now: in an accept "
	    "back-off.", offsetof(struct stats_listener_snap, paused), 1);
	metrics_per_listener(b, snap,
	    "acceptd_listener_accept_backoffs_total", "counter",
	    "Accept back-offs begun after an accept error (EMFILE, ...).",
	    offsetof(struct stats_listener_snap, backoffs), 0);
}

/* A backend's metric: name{listener="x",backend="y"} value. */
static void
metrics_per_backend(struct evbuffer *b, const struct stats_snapshot *snap,
    const char *name, const char *type, const char *help, size_t off,
    int is_flag)
{
	const struct stats_backend_snap	*bs;
	const char			*p;
	size_t				 i;

	metrics_head(b, name, type, help);
	for (i = 0; i < snap->nbackends; i++) {
		bs = &snap->backends[i];
		p = (const char *)bs + off;
		evbuffer_add_printf(b, "%s{listener=\"", name);
		metrics_label(b, bs->listener);
		evbuffer_add(b, "\",backend=\"", 11);
		metrics_label(b, bs->address);
		if (is_flag)
			evbuffer_add_printf(b, "\"} %d\n",
			    *(const int *)p ? 1 : 0);
		else
			evbuffer_add_printf(b, "\"} %llu\n",
			    *(const unsigned long long *)p);
	}
}

/* Per backend: up, disabled, connections, failures. */
static void
metrics_write_backends(struct evbuffer *b, const struct stats_snapshot *snap)
{
	metrics_per_backend(b, snap, "acceptd_backend_up", "gauge",
	    "1 if the backend may take connections as far as its health "
	    "goes, 0 if it is marked down.",
	    offsetof(struct stats_backend_snap, up), 1);
	metrics_per_backend(b, snap, "acceptd_backend_disabled", "gauge",
	    "1 if the backend was disabled with acceptctl (draining).",
	    offsetof(struct stats_backend_snap, admin_down), 1);
	metrics_per_backend(b, snap, "acceptd_backend_connections_active",
	    "gauge", "Connections to the backend open now (connecting "
	    "included).", offsetof(struct stats_backend_snap, active), 0);
	metrics_per_backend(b, snap, "acceptd_backend_connections_total",
	    "counter", "Connection attempts to the backend.",
	    offsetof(struct stats_backend_snap, total), 0);
	metrics_per_backend(b, snap, "acceptd_backend_connect_failures_total",
	    "counter", "Connects to the backend that failed or timed out.",
	    offsetof(struct stats_backend_snap, failures), 0);
}
