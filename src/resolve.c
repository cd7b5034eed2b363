/*
 * Backend host names, resolved with libevent's evdns on the main loop, so
 * that the loop never blocks on DNS. One evdns base serves the daemon; it
 * reads resolv_conf (and the hosts file) again at every resolve_config,
 * that is at startup and at every reload. Every name's last good answer
 * is kept here: pools build their endpoints from it, and a lookup that
 * fails leaves it in use.
 *
 * A lookup's result always reaches its caller from the loop, never from
 * inside resolve_host, even when evdns answers at once (hosts file).
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "acceptd.h"

/* Flushing cancelled lookups at shutdown takes at most this many turns. */
#define RESOLVE_FLUSH_TURNS	100

/* A name and its last good answer (no answer yet: naddrs 0). */
struct resolve_name {
	TAILQ_ENTRY(resolve_name) entry;
	char			*host;
	struct sockaddr_storage	*addrs;		/* port 0, sorted */
	size_t			 naddrs;
	int			 failing;	/* the last lookup failed */
	char			 error[128];	/* why */
};
TAILQ_HEAD(resolve_names, resolve_name);

/* One lookup. */
struct resolve_req {
	TAILQ_ENTRY(resolve_req) entry;
	char			*host;
	struct evdns_getaddrinfo_request *gai;
	int			 pending;	/* evdns has not answered */
	struct event		*ev;		/* hands the result over */
	int			 ok;
	void			(*cb)(void *, int);	/* NULL: cancelled */
	void			*arg;
};
TAILQ_HEAD(resolve_reqs, resolve_req);

/* A name of a resolve_config job. */
struct resolve_job_host {
	struct resolve_job	*job;
	const char		*host;
	struct resolve_req	*req;
};

/* resolve_config: every name of a configuration, then one call back. */
struct resolve_job {
	TAILQ_ENTRY(resolve_job) entry;
	struct config		*conf;
	void			(*done)(void *, struct causes *);
	void			*arg;
	struct resolve_job_host	*hosts;
	size_t			 nhosts;
	size_t			 pending;
	struct event		*ev;		/* no name: call back */
};
TAILQ_HEAD(resolve_jobs, resolve_job);

static struct event_base	*resolve_base;
static struct evdns_base	*resolve_dns;
static struct resolve_names	 resolve_names =
    TAILQ_HEAD_INITIALIZER(resolve_names);
static struct resolve_reqs	 resolve_reqs =
    TAILQ_HEAD_INITIALIZER(resolve_reqs);
static struct resolve_jobs	 resolve_jobs =
    TAILQ_HEAD_INITIALIZER(resolve_jobs);

static void	 resolve_evdns_log(int, const char *);
static int	 resolve_setup(const char *);
static struct resolve_name *resolve_find(const char *);
static int	 resolve_compare(const void *, const void *);
static const char *resolve_strerror(int);
static void	 resolve_describe(const struct sockaddr_storage *, size_t,
		     char *, size_t);
static int	 resolve_store(const char *, int, struct evutil_addrinfo *);
static void	 resolve_answer(int, struct evutil_addrinfo *, void *);
static void	 resolve_deliver(evutil_socket_t, short, void *);
static void	 resolve_req_free(struct resolve_req *);
static void	 resolve_job_one(void *, int);
static void	 resolve_job_ready(evutil_socket_t, short, void *);
static void	 resolve_job_finish(struct resolve_job *);
static void	 resolve_job_free(struct resolve_job *);

/*
 * evdns's own messages (a nameserver timing out, ...) are details: what
 * matters is logged once per name by resolve_store.
 */
static void
resolve_evdns_log(int severity, const char *msg)
{
	log_debug("evdns: %s", msg);
}

/*
 * Create the evdns base, or set it up again, from resolv_conf and the
 * hosts file. A file that cannot be read, or that names no nameserver,
 * leaves 127.0.0.1 as the nameserver, as the C library would.
 */
static int
resolve_setup(const char *path)
{
	int	 rc, again = 0;

	if (resolve_dns == NULL) {
		evdns_set_log_fn(resolve_evdns_log);
		resolve_dns = evdns_base_new(resolve_base,
		    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (resolve_dns == NULL) {
			log_warnx("cannot set up the DNS resolver");
			return (-1);
		}
	} else {
		evdns_base_clear_nameservers_and_suspend(resolve_dns);
		evdns_base_search_clear(resolve_dns);
		evdns_base_clear_host_addresses(resolve_dns);
		again = 1;
	}
	if (access(path, R_OK) == -1) {
		log_warnx("resolv_conf \"%s\": %s: using the nameserver "
		    "127.0.0.1", path, strerror(errno));
	}
	rc = evdns_base_resolv_conf_parse(resolve_dns, DNS_OPTIONS_ALL, path);
	if (rc == 6)
		log_warnx("resolv_conf \"%s\" names no nameserver: using "
		    "127.0.0.1", path);
	else if (rc != 0 && rc != 1)
		log_warnx("resolv_conf \"%s\" cannot be read (error %d)",
		    path, rc);
	if (evdns_base_count_nameservers(resolve_dns) == 0)
		evdns_base_nameserver_ip_add(resolve_dns, "127.0.0.1");
	if (again)
		evdns_base_resume(resolve_dns);
	return (0);
}

/* The cache entry of a name, or NULL. */
static struct resolve_name *
resolve_find(const char *host)
{
	struct resolve_name	*rn;

	TAILQ_FOREACH(rn, &resolve_names, entry) {
		if (strcasecmp(rn->host, host) == 0)
			return (rn);
	}
	return (NULL);
}

/* Order addresses: IPv4 first, then by address. */
static int
resolve_compare(const void *va, const void *vb)
{
	const struct sockaddr_storage	*a = va, *b = vb;

	if (a->ss_family != b->ss_family)
		return (a->ss_family == AF_INET ? -1 : 1);
	if (a->ss_family == AF_INET)
		return (memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		    &((const struct sockaddr_in *)b)->sin_addr, 4));
	return (memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr, 16));
}

/* Why a lookup failed, in an operator's words. */
static const char *
resolve_strerror(int result)
{
	if (result == EVUTIL_EAI_NONAME)
		return ("no such host name");
	if (result == EVUTIL_EAI_NODATA)
		return ("no address for this name");
	if (result == EVUTIL_EAI_FAIL)
		return ("no answer from the nameservers, or they failed");
	if (result == EVUTIL_EAI_AGAIN)
		return ("temporary failure");
	return (evutil_gai_strerror(result));
}

/* A list of addresses for a log line, shortened if long. */
static void
resolve_describe(const struct sockaddr_storage *v, size_t n, char *buf,
    size_t len)
{
	char	 one[INET6_ADDRSTRLEN + 16], *p;
	size_t	 i, used = 0;

	*buf = '\0';
	for (i = 0; i < n; i++) {
		format_sockaddr((const struct sockaddr *)&v[i],
		    v[i].ss_family == AF_INET ? sizeof(struct sockaddr_in) :
		    sizeof(struct sockaddr_in6), one, sizeof one);
		/* Port 0: drop the ":0" and the IPv6 brackets. */
		if ((p = strrchr(one, ':')) != NULL)
			*p = '\0';
		if (one[0] == '[') {
			memmove(one, one + 1, strlen(one));
			if ((p = strchr(one, ']')) != NULL)
				*p = '\0';
		}
		if (used + strlen(one) + 16 >= len) {
			snprintf(buf + used, len - used, ", ... (%zu)", n);
			return;
		}
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
		    i == 0 ? "" : ", ", one);
	}
}

/*
 * Keep the answer of a lookup for a name: the IPv4 and IPv6 addresses on
 * success, the reason otherwise, with the last good answer left in use.
 * Returns 1 if the name now has a fresh answer.
 */
static int
resolve_store(const char *host, int result, struct evutil_addrinfo *ai)
{
	struct resolve_name	*rn;
	struct sockaddr_storage	*v = NULL, *nv;
	struct evutil_addrinfo	*a;
	char			 list[512];
	size_t			 n = 0, cap = 0, i;

	if ((rn = resolve_find(host)) == NULL) {
		if ((rn = calloc(1, sizeof *rn)) == NULL)
			return (0);
		if ((rn->host = strdup(host)) == NULL) {
			free(rn);
			return (0);
		}
		TAILQ_INSERT_TAIL(&resolve_names, rn, entry);
	}
	for (a = result == 0 ? ai : NULL; a != NULL; a = a->ai_next) {
		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
		    a->ai_addrlen > sizeof *v)
			continue;
		if (n == cap) {
			cap = cap == 0 ? 4 : 2 * cap;
			if ((nv = reallocarray(v, cap, sizeof *v)) == NULL) {
				free(v);
				return (0);
			}
			v = nv;
		}
		memset(&v[n], 0, sizeof v[n]);
		memcpy(&v[n], a->ai_addr, a->ai_addrlen);
		if (a->ai_family == AF_INET)
			((struct sockaddr_in *)&v[n])->sin_port = 0;
		else
			((struct sockaddr_in6 *)&v[n])->sin6_port = 0;
		for (i = 0; i < n; i++) {
			if (resolve_compare(&v[i], &v[n]) == 0)
				break;
		}
		if (i == n)
			n++;
	}
	if (n == 0) {
		free(v);
		snprintf(rn->error, sizeof rn->error, "%s", result != 0 ?
		    resolve_strerror(result) : "no IPv4 or IPv6 address");
		if (!rn->failing && rn->naddrs > 0) {
			resolve_describe(rn->addrs, rn->naddrs, list,
			    sizeof list);
			log_warnx("backend host %s: lookup failed (%s): "
			    "keeping its last addresses (%s)", host,
			    rn->error, list);
		}
		rn->failing = 1;
		return (0);
	}
	qsort(v, n, sizeof *v, resolve_compare);
	if (n != rn->naddrs || memcmp(v, rn->addrs, n * sizeof *v) != 0) {
		resolve_describe(v, n, list, sizeof list);
		log_info("backend host %s resolves to %s", host, list);
	} else if (rn->failing)
		log_notice("backend host %s resolves again", host);
	free(rn->addrs);
	rn->addrs = v;
	rn->naddrs = n;
	rn->failing = 0;
	rn->error[0] = '\0';
	return (1);
}

/*
 * The addresses a name last resolved to (port 0), valid until the next
 * lookup; *v may be NULL to only count them.
 */
size_t
resolve_lookup(const char *host, const struct sockaddr_storage **v)
{
	struct resolve_name	*rn;

	if ((rn = resolve_find(host)) == NULL)
		return (0);
	if (v != NULL)
		*v = rn->addrs;
	return (rn->naddrs);
}

/*
 * Look a name up (IPv4 and IPv6); cb(arg, ok) runs from the loop once the
 * answer is kept, ok 0 when the lookup failed. NULL if no lookup could be
 * started (no resolver yet, or no memory).
 */
struct resolve_req *
resolve_host(const char *host, void (*cb)(void *, int), void *arg)
{
	struct resolve_req	*req;
	struct evutil_addrinfo	 hints;
	struct evdns_getaddrinfo_request *gai;

	if (resolve_dns == NULL)
		return (NULL);
	if ((req = calloc(1, sizeof *req)) == NULL)
		return (NULL);
	req->cb = cb;
	req->arg = arg;
	if ((req->host = strdup(host)) == NULL ||
	    (req->ev = event_new(resolve_base, -1, 0, resolve_deliver,
	    req)) == NULL) {
		free(req->host);
		free(req);
		return (NULL);
	}
	TAILQ_INSERT_TAIL(&resolve_reqs, req, entry);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	req->pending = 1;
	gai = evdns_getaddrinfo(resolve_dns, host, NULL, &hints,
	    resolve_answer, req);
	if (req->pending)
		req->gai = gai;		/* else answered already */
	return (req);
}

/* evdns answered (or the lookup was cancelled). */
static void
resolve_answer(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct resolve_req	*req = arg;

	req->pending = 0;
	req->gai = NULL;
	if (result != EVUTIL_EAI_CANCEL)
		req->ok = resolve_store(req->host, result, ai);
	if (ai != NULL)
		evutil_freeaddrinfo(ai);
	if (req->cb == NULL) {
		resolve_req_free(req);
		return;
	}
	event_active(req->ev, EV_TIMEOUT, 1);
}

/* Hand a result over to whoever asked. */
static void
resolve_deliver(evutil_socket_t fd, short events, void *arg)
{
	struct resolve_req	*req = arg;
	void			(*cb)(void *, int) = req->cb;
	void			*cbarg = req->arg;
	int			 ok = req->ok;

	resolve_req_free(req);
	if (cb != NULL)
		cb(cbarg, ok);
}

/* Free a lookup evdns is done with. */
static void
resolve_req_free(struct resolve_req *req)
{
	TAILQ_REMOVE(&resolve_reqs, req, entry);
	event_free(req->ev);
	free(req->host);
	free(req);
}

/* Cancel a lookup: its callback will not run. */
void
resolve_cancel(struct resolve_req *req)
{
	if (req == NULL)
		return;
	if (req->pending) {
		/* evdns calls resolve_answer later, which frees it. */
		if (req->cb != NULL) {
			req->cb = NULL;
			evdns_getaddrinfo_cancel(req->gai);
		}
		return;
	}
	resolve_req_free(req);
}

/*
 * Resolve every backend host name of a configuration (setting up the
 * resolver from its resolv_conf first), then call done(arg, causes) from
 * the loop: causes holds one FILE:LINE error for every backends entry
 * whose name never resolved, and is freed when done returns. A name whose
 * lookup fails now but resolved before keeps its last answer.
 */
struct resolve_job *
resolve_config(struct event_base *base, struct config *conf,
    void (*done)(void *, struct causes *), void *arg)
{
	const struct listener_conf	*lc;
	const struct backend_conf	*bc;
	struct resolve_job		*job;
	struct resolve_job_host		*h;
	size_t				 i, j, k, max = 0;

	resolve_base = base;
	job = xcalloc(1, sizeof *job);
	job->conf = config_ref(conf);
	job->done = done;
	job->arg = arg;
	TAILQ_INSERT_TAIL(&resolve_jobs, job, entry);
	for (i = 0; i < conf->nlisteners; i++)
		max += conf->listeners[i].nbackends;
	if (max > 0)
		job->hosts = xcalloc(max, sizeof *job->hosts);
	for (i = 0; i < conf->nlisteners; i++) {
		lc = &conf->listeners[i];
		for (j = 0; j < lc->nbackends; j++) {
			bc = &lc->backends[j];
			if (bc->addr.kind != ADDRESS_NAME)
				continue;
			for (k = 0; k < job->nhosts; k++) {
				if (strcasecmp(job->hosts[k].host,
				    bc->addr.host) == 0)
					break;
			}
			if (k == job->nhosts) {
				job->hosts[k].job = job;
				job->hosts[job->nhosts++].host = bc->addr.host;
			}
		}
	}
	if (job->nhosts > 0 && resolve_setup(conf->resolv_conf) == 0) {
		for (k = 0; k < job->nhosts; k++) {
			h = &job->hosts[k];
			h->req = resolve_host(h->host, resolve_job_one, h);
			if (h->req != NULL)
				job->pending++;
		}
	}
	if (job->pending == 0) {
		job->ev = event_new(base, -1, 0, resolve_job_ready, job);
		if (job->ev == NULL)
			fatalx("cannot create an event");
		event_active(job->ev, EV_TIMEOUT, 1);
	}
	return (job);
}

/* A name of a job was looked up. */
static void
resolve_job_one(void *arg, int ok)
{
	struct resolve_job_host	*h = arg;
	struct resolve_job	*job = h->job;

	h->req = NULL;
	if (--job->pending == 0)
		resolve_job_finish(job);
}

/* A job with nothing to look up is done. */
static void
resolve_job_ready(evutil_socket_t fd, short events, void *arg)
{
	resolve_job_finish(arg);
}

/* Every name of the job was looked up: report, call back, free. */
static void
resolve_job_finish(struct resolve_job *job)
{
	struct causes			 causes = { NULL, 0 };
	const struct listener_conf	*lc;
	const struct backend_conf	*bc;
	struct resolve_name		*rn;
	size_t				 i, j;

	for (i = 0; i < job->conf->nlisteners; i++) {
		lc = &job->conf->listeners[i];
		for (j = 0; j < lc->nbackends; j++) {
			bc = &lc->backends[j];
			if (bc->addr.kind != ADDRESS_NAME ||
			    resolve_lookup(bc->addr.host, NULL) != 0)
				continue;
			rn = resolve_find(bc->addr.host);
			causes_add(&causes, "%s:%d: setting 'backends': "
			    "\"%s\": cannot resolve \"%s\": %s", bc->file,
			    bc->line, bc->addr.text, bc->addr.host,
			    rn != NULL && rn->error[0] != '\0' ? rn->error :
			    "no resolver");
		}
	}
	job->done(job->arg, &causes);
	causes_free(&causes);
	resolve_job_free(job);
}

/* Free a job, cancelling what it still waits for. */
static void
resolve_job_free(struct resolve_job *job)
{
	size_t	 i;

	TAILQ_REMOVE(&resolve_jobs, job, entry);
	for (i = 0; i < job->nhosts; i++)
		resolve_cancel(job->hosts[i].req);
	if (job->ev != NULL)
		event_free(job->ev);
	free(job->hosts);
	config_unref(job->conf);
	free(job);
}

/* Drop a resolve_config in progress: done will not be called. */
void
resolve_job_cancel(struct resolve_job *job)
{
	if (job != NULL)
		resolve_job_free(job);
}

/*
 * At exit, once the loop is over: drop the jobs and lookups still going,
 * let evdns hand the cancelled ones back (a few turns of the loop), and
 * free the resolver and every kept answer.
 */
void
resolve_shutdown(struct event_base *base)
{
	struct resolve_name	*rn;
	struct resolve_req	*req, *next;
	int			 turns;

	while (!TAILQ_EMPTY(&resolve_jobs))
		resolve_job_free(TAILQ_FIRST(&resolve_jobs));
	for (req = TAILQ_FIRST(&resolve_reqs); req != NULL; req = next) {
		next = TAILQ_NEXT(req, entry);
		resolve_cancel(req);
	}
	for (turns = 0; !TAILQ_EMPTY(&resolve_reqs) &&
	    turns < RESOLVE_FLUSH_TURNS; turns++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	if (resolve_dns != NULL && TAILQ_EMPTY(&resolve_reqs)) {
		evdns_base_free(resolve_dns, 0);
		resolve_dns = NULL;
	}
	while ((rn = TAILQ_FIRST(&resolve_names)) != NULL) {
		TAILQ_REMOVE(&resolve_names, rn, entry);
		free(rn->addrs);
		free(rn->host);
		free(rn);
	}
	resolve_base = NULL;
}
