/*
 * The daemon: raise the descriptor limit, bind every listen address, drop
 * privileges, run the event loop, and handle the signals that reload and
 * stop it; keep systemd told (ready, reloading, stopping, status,
 * watchdog).
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "acceptd.h"

/* STATUS= is sent again at most this often, and only when it changed. */
#define DAEMON_STATUS_SEC	2

struct daemon {
	struct config		*conf;
	struct event_base	*base;
	struct workers		*workers;
	size_t			 stale_worker;	/* watchdog: +1 of the stuck one */
	struct listener_list	 listeners;
	size_t			 nlisteners;
	struct backend_pool	**pools;	/* one per listener_conf */
	size_t			 npools;
	struct event		*signals[3];
	struct event		*stop_timer;
	int			 stopping;

	int			 level_fixed;	/* -l: reloads keep it */
	struct privileges	 priv;
	struct reload		*reload;	/* being read, or NULL */
	struct event		*reload_ev;	/* its pipe is readable */
	int			 reload_again;	/* SIGHUP meanwhile */
	unsigned long long	 reloads;	/* successful */
	char			*reload_error;	/* last reload's, or NULL */
	struct event		*watchdog;
	struct event		*status_timer;
	char			*status_sent;	/* last STATUS= */

	struct resolve_job	*resolving;	/* backend names, or NULL */
	struct config		*resolving_conf; /* a reload's, meanwhile */
	int			 resolve_failed;

	/* Runtime visibility: metrics and the control socket. */
	struct stats_source	 source;	/* what they read */
	struct metrics		*metrics;
	struct control		*control;
	struct metrics		*metrics_next;	/* a reload's, until applied */
	struct control		*control_next;
	struct control		*control_old;	/* replaced; its clients end */
	unsigned long long	 reload_seq;	/* reloads begun */
	unsigned long long	 reload_failures;
	int			 serving;	/* started, not stopping */
};

static void	 daemon_ignore_sigpipe(void);
static void	 daemon_raise_nofile(void);
static int	 daemon_setup(struct daemon *);
static int	 daemon_setup_timers(struct daemon *);
static int	 daemon_listen(struct daemon *);
static struct backend_pool **daemon_pools_new(struct config *);
static void	 daemon_pools_free(struct backend_pool **, size_t);
static int	 daemon_resolve(struct daemon *);
static void	 daemon_resolved(void *, struct causes *);
static void	 daemon_reload_resolved(void *, struct causes *);
static void	 daemon_carry_over_pools(struct config *,
		     struct backend_pool **, struct config *,
		     struct backend_pool **);
static void	 daemon_status(struct daemon *, char *, size_t);
static void	 daemon_status_sent(struct daemon *, const char *);
static void	 daemon_status_timer(evutil_socket_t, short, void *);
static void	 daemon_watchdog(evutil_socket_t, short, void *);
static void	 daemon_signal(evutil_socket_t, short, void *);
static void	 daemon_reload_begin(struct daemon *);
static void	 daemon_reload_read(evutil_socket_t, short, void *);
static void	 daemon_reload_finish(struct daemon *, struct config *,
		     struct causes *);
static int	 daemon_reload_apply(struct daemon *, struct config *,
		     struct causes *);
static int	 daemon_same_string(const char *, const char *);
static void	 daemon_reload_done(struct daemon *, struct causes *);
static void	 daemon_reload_cancel(struct daemon *);
static void	 daemon_stop(struct daemon *);
static void	 daemon_stop_timeout(evutil_socket_t, short, void *);
static void	 daemon_session_closed(void *);
static void	 daemon_close_listeners(struct daemon *);
static void	 daemon_cleanup(struct daemon *);
static int	 daemon_runtime_start(struct daemon *);
static int	 daemon_runtime_prepare(struct daemon *, struct config *,
		     struct causes *);
static void	 daemon_runtime_commit(struct daemon *, struct config *);
static void	 daemon_runtime_abort(struct daemon *);
static void	 daemon_runtime_reloaded(struct daemon *, struct causes *);
static void	 daemon_runtime_stop(struct daemon *);
static void	 daemon_view(void *, struct stats_view *);
static int	 daemon_control_reload(void *, unsigned long long *);

/* SIGPIPE would kill us on a write to a reset peer: ignore it. */
static void
daemon_ignore_sigpipe(void)
{
	struct sigaction	 sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGPIPE, &sa, NULL) == -1)
		fatal("sigaction");
}

/* Raise the soft descriptor limit to the hard one. */
static void
daemon_raise_nofile(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit(RLIMIT_NOFILE)");
		return;
	}
	if (rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("setrlimit(RLIMIT_NOFILE)");
}

/* Create the event base, the workers, the backend pools and the signals. */
static int
daemon_setup(struct daemon *d)
{
	static const int	 sigs[] = { SIGHUP, SIGTERM, SIGINT };
	size_t			 i;

	/* Before any base: worker loops are woken from the main one. */
	if (evthread_use_pthreads() == -1) {
		log_errorx("cannot set up libevent for threads");
		return (-1);
	}
	if ((d->base = event_base_new()) == NULL) {
		log_errorx("cannot create the event loop");
		return (-1);
	}
	/* With workers = 1 the worker runs on the main loop. */
	if ((d->workers = workers_new(d->base, workers_count(d->conf))) ==
	    NULL) {
		log_errorx("cannot create the workers");
		return (-1);
	}
	workers_set_closed_cb(d->workers, daemon_session_closed, d);
	limits_init(d->base);

	d->npools = d->conf->nlisteners;
	d->pools = daemon_pools_new(d->conf);

	for (i = 0; i < nitems(sigs); i++) {
		d->signals[i] = evsignal_new(d->base, sigs[i], daemon_signal,
		    d);
		if (d->signals[i] == NULL ||
		    event_add(d->signals[i], NULL) == -1) {
			log_errorx("cannot set up signal %d", sigs[i]);
			return (-1);
		}
	}
	if ((d->stop_timer = evtimer_new(d->base, daemon_stop_timeout,
	    d)) == NULL) {
		log_errorx("cannot create the shutdown timer");
		return (-1);
	}
	return (daemon_setup_timers(d));
}

/*
 * The periodic timers of the main loop: STATUS= refreshes, and WATCHDOG=1
 * at half of $WATCHDOG_USEC when systemd asks for it. The watchdog is fed
 * from the loop itself, so a loop that hangs stops feeding it.
 */
static int
daemon_setup_timers(struct daemon *d)
{
	struct timeval		 tv = { DAEMON_STATUS_SEC, 0 };
	unsigned long long	 usec;

	d->status_timer = event_new(d->base, -1, EV_PERSIST,
	    daemon_status_timer, d);
	if (d->status_timer == NULL || event_add(d->status_timer, &tv) == -1) {
		log_errorx("cannot create the status timer");
		return (-1);
	}
	if (!systemd_watchdog_usec(&usec))
		return (0);
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	d->watchdog = event_new(d->base, -1, EV_PERSIST, daemon_watchdog, d);
	if (d->watchdog == NULL || event_add(d->watchdog, &tv) == -1) {
		log_errorx("cannot create the watchdog timer");
		return (-1);
	}
	/* Every worker loop beats twice per tick: one beat must come. */
	if (workers_heartbeat(d->workers, (long long)(usec / 2000)) == -1) {
		log_errorx("cannot create the worker heartbeats");
		return (-1);
	}
	log_info("watchdog: WATCHDOG=1 every %llu ms", usec / 1000);
	return (0);
}

/*
 * Feed systemd's watchdog: the main loop runs this, and every worker
 * loop beat since the last time.
 */
static void
daemon_watchdog(evutil_socket_t fd, short events, void *arg)
{
	struct daemon	*d = arg;
	size_t		 stale;

	if (workers_alive(d->workers, &stale)) {
		if (d->stale_worker != 0)
			log_notice("watchdog: worker %zu runs again",
			    d->stale_worker - 1);
		d->stale_worker = 0;
		systemd_watchdog_ping();
		return;
	}
	if (d->stale_worker == 0) {
		log_warnx("watchdog: worker %zu did not run for a watchdog "
		    "tick: WATCHDOG=1 is not sent", stale);
	}
	d->stale_worker = stale + 1;
}

/*
 * Bind every listen address of every listener, disabled for now. The
 * first failure is a startup error naming the listener and the address.
 */
static int
daemon_listen(struct daemon *d)
{
	struct listener_conf	*lc;
	struct listener		*l;
	char			*cause;
	size_t			 i, j;

	if (activation_init(d->conf, &cause) == -1) {
		log_errorx("%s", cause);
		free(cause);
		return (-1);
	}
	for (i = 0; i < d->conf->nlisteners; i++) {
		lc = &d->conf->listeners[i];
		for (j = 0; j < lc->nlisten; j++) {
			if (listener_open(&d->listeners, d->base, lc,
			    &lc->listen[j], &cause) == -1) {
				log_errorx("listener '%s': %s", lc->name,
				    cause);
				free(cause);
				return (-1);
			}
		}
		TAILQ_FOREACH(l, &d->listeners, entry) {
			if (l->lc == NULL)
				listener_attach(l, d->workers, d->conf, lc,
				    d->pools[i]);
		}
	}
	if (activation_finish(&cause) == -1) {
		log_errorx("%s", cause);
		free(cause);
		return (-1);
	}
	activation_store(&d->listeners);
	d->nlisteners = 0;
	TAILQ_FOREACH(l, &d->listeners, entry)
		d->nlisteners++;
	return (0);
}

/* The backend pools of a configuration, one per listener. */
static struct backend_pool **
daemon_pools_new(struct config *conf)
{
	struct backend_pool	**pools;
	size_t			  i;

	pools = xcalloc(conf->nlisteners, sizeof *pools);
	for (i = 0; i < conf->nlisteners; i++)
		pools[i] = backend_pool_new(conf, &conf->listeners[i]);
	return (pools);
}

/*
 * Drop the daemon's references to a set of pools, stopping their health
 * checks and name resolution (their connections may go on).
 */
static void
daemon_pools_free(struct backend_pool **pools, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		backend_pool_stop(pools[i]);
		backend_pool_unref(pools[i]);
	}
	free(pools);
}

/*
 * Resolve the backend host names before anything is served, with the
 * loop running (signals work meanwhile); then the pools take the answers
 * and start their health checks and periodic resolution. -1 if a name
 * never resolved (each one is logged as FILE:LINE: message).
 */
static int
daemon_resolve(struct daemon *d)
{
	size_t	 i;

	d->resolving = resolve_config(d->base, d->conf, daemon_resolved, d);
	if (event_base_dispatch(d->base) == -1) {
		log_errorx("event loop failed");
		return (-1);
	}
	if (d->resolving != NULL) {
		/* Stopped before the answers came. */
		resolve_job_cancel(d->resolving);
		d->resolving = NULL;
		return (0);
	}
	if (d->resolve_failed)
		return (-1);
	for (i = 0; i < d->npools; i++) {
		backend_pool_refresh(d->pools[i]);
		backend_pool_start(d->pools[i], d->base);
	}
	return (0);
}

/* The names of the starting configuration were looked up. */
static void
daemon_resolved(void *arg, struct causes *errs)
{
	struct daemon	*d = arg;
	size_t		 i;

	d->resolving = NULL;
	for (i = 0; i < errs->n; i++)
		log_errorx("%s", errs->v[i]);
	d->resolve_failed = errs->n > 0;
	event_base_loopbreak(d->base);
}

/*
 * The names of a reloaded configuration were looked up: apply it, or
 * keep the running one if a name never resolved.
 */
static void
daemon_reload_resolved(void *arg, struct causes *errs)
{
	struct daemon	*d = arg;
	struct config	*conf = d->resolving_conf;

	d->resolving = NULL;
	d->resolving_conf = NULL;
	if (errs->n > 0 || d->stopping) {
		config_unref(conf);
		conf = NULL;
	}
	if (!d->stopping)
		daemon_reload_finish(d, conf, errs);
}

/*
 * A reload made new pools: carry what the running ones learnt over to
 * them, per listener name (a listener is the same listener across a
 * reload when its name is). backend.c does the copying per backend
 * address.
 */
static void
daemon_carry_over_pools(struct config *conf, struct backend_pool **pools,
    struct config *old, struct backend_pool **old_pools)
{
	size_t	 i, j;

	for (i = 0; i < conf->nlisteners; i++) {
		for (j = 0; j < old->nlisteners; j++) {
			if (strcmp(conf->listeners[i].name,
			    old->listeners[j].name) == 0)
				break;
		}
		if (j < old->nlisteners)
			backend_pool_inherit(pools[i], old_pools[j]);
	}
}

/*
 * One line for systemd's STATUS= and the startup notice: what runs, the
 * connections, and how the last reload went.
 */
static void
daemon_status(struct daemon *d, char *buf, size_t len)
{
	unsigned long long down = 0, active, served;
	size_t		 i;

	active = d->workers != NULL ? workers_active(d->workers) : 0;
	served = d->workers != NULL ? workers_accepted(d->workers) : 0;

	for (i = 0; i < d->npools; i++)
		down += backend_pool_down(d->pools[i]);
	snprintf(buf, len, "%s%s%s%s%zu listener%s on %zu socket%s, "
	    "%llu connection%s active, %llu served, %llu backend%s down%s",
	    d->stopping ? "stopping: " : "",
	    d->reload_error != NULL ? "reload failed: " : "",
	    d->reload_error != NULL ? d->reload_error : "",
	    d->reload_error != NULL ? "; " : "",
	    d->conf->nlisteners, d->conf->nlisteners == 1 ? "" : "s",
	    d->nlisteners, d->nlisteners == 1 ? "" : "s",
	    active, active == 1 ? "" : "s", served,
	    down, down == 1 ? "" : "s",
	    d->reload_error == NULL && d->reloads > 0 ? "; last reload ok" :
	    "");
}

/* Remember the STATUS= systemd was last sent. */
static void
daemon_status_sent(struct daemon *d, const char *status)
{
	free(d->status_sent);
	d->status_sent = xstrdup(status);
}

/* Refresh STATUS= when something changed since it was last sent. */
static void
daemon_status_timer(evutil_socket_t fd, short events, void *arg)
{
	struct daemon	*d = arg;
	char		 status[1024];

	daemon_status(d, status, sizeof status);
	if (d->status_sent != NULL && strcmp(status, d->status_sent) == 0)
		return;
	systemd_status("%s", status);
	daemon_status_sent(d, status);
}

/*
 * Signals, from the event loop (not signal context). SIGHUP reloads;
 * SIGTERM and SIGINT stop, and a second one exits at once.
 */
static void
daemon_signal(evutil_socket_t sig, short events, void *arg)
{
	struct daemon	*d = arg;

	switch (sig) {
	case SIGHUP:
		daemon_reload_begin(d);
		break;
	case SIGTERM:
	case SIGINT:
		if (d->stopping) {
			log_notice("%s again: exiting now", strsignal(sig));
			event_base_loopbreak(d->base);
			break;
		}
		daemon_stop(d);
		break;
	}
}

/*
 * SIGHUP: tell systemd, then read the file off the loop, which serves on
 * meanwhile. A SIGHUP during a reload is remembered: however many come,
 * one more reload follows, so that the last change to the file is read.
 */
static void
daemon_reload_begin(struct daemon *d)
{
	struct causes	 errs = { NULL, 0 };
	char		*cause;

	if (d->stopping) {
		log_notice("SIGHUP while stopping: not reloading");
		return;
	}
	if (!d->serving) {
		/* Still starting: reload once READY=1 is sent. */
		d->reload_again = 1;
		return;
	}
	if (d->reload != NULL || d->resolving != NULL) {
		if (!d->reload_again)
			log_info("SIGHUP during a reload: one more follows it");
		d->reload_again = 1;
		return;
	}
	d->reload_seq++;	/* control_reload_done tells which one ended */
	systemd_reloading();
	log_notice("reloading %s", d->conf->path);
	if ((d->reload = reload_start(d->conf->path, &cause)) == NULL) {
		causes_add(&errs, "%s", cause);
		free(cause);
		daemon_reload_done(d, &errs);
		causes_free(&errs);
		return;
	}
	d->reload_ev = event_new(d->base, reload_fd(d->reload), EV_READ,
	    daemon_reload_read, d);
	if (d->reload_ev == NULL || event_add(d->reload_ev, NULL) == -1) {
		/* Cannot wait for it on the loop: wait here. */
		daemon_reload_read(-1, 0, d);
	}
}

/*
 * The file was read (or could not be): apply it, or keep the running
 * configuration; either way systemd gets READY=1.
 */
static void
daemon_reload_read(evutil_socket_t fd, short events, void *arg)
{
	struct daemon	*d = arg;
	struct causes	 errs = { NULL, 0 };
	struct config	*conf;

	if (d->reload_ev != NULL) {
		event_free(d->reload_ev);
		d->reload_ev = NULL;
	}
	conf = reload_finish(d->reload, &errs);
	d->reload = NULL;
	if (d->stopping) {
		if (conf != NULL)
			config_unref(conf);
		causes_free(&errs);
		return;
	}
	if (conf != NULL && errs.n == 0) {
		/* Resolve its backend names off the loop first. */
		d->resolving_conf = conf;
		d->resolving = resolve_config(d->base, conf,
		    daemon_reload_resolved, d);
		return;
	}
	daemon_reload_finish(d, conf, &errs);
	causes_free(&errs);
}

/*
 * The last step of a reload, once the new configuration is read (and its
 * names resolved), or failed (conf NULL, errors in errs): apply it, tell
 * systemd, and start the reload that a SIGHUP meanwhile asked for.
 */
static void
daemon_reload_finish(struct daemon *d, struct config *conf,
    struct causes *errs)
{
	if (conf != NULL)
		daemon_reload_apply(d, conf, errs);
	daemon_reload_done(d, errs);
	if (d->reload_again && !d->stopping) {
		d->reload_again = 0;
		daemon_reload_begin(d);
	}
}

/*
 * Swap in a new configuration (the reference is the caller's no more).
 * Listening sockets whose address and options are unchanged stay open,
 * new addresses are bound and removed ones closed; new connections go by
 * conf, established ones finish on the snapshot they started with. Any
 * failure leaves everything as it was and returns -1, errors in errs.
 */
static int
daemon_reload_apply(struct daemon *d, struct config *conf,
    struct causes *errs)
{
	struct listener_list	  next, replaced;
	struct listener_conf	 *lc;
	struct listener		 *l;
	struct backend_pool	**pools;
	struct config		 *old = d->conf;
	char			 *cause;
	size_t			  i, j;

	TAILQ_INIT(&next);
	TAILQ_INIT(&replaced);
	if (daemon_runtime_prepare(d, conf, errs) == -1) {
		config_unref(conf);
		return (-1);
	}
	for (i = 0; i < conf->nlisteners; i++) {
		lc = &conf->listeners[i];
		for (j = 0; j < lc->nlisten; j++) {
			if (listener_reload_open(&next, &d->listeners,
			    &replaced, d->base, lc, &lc->listen[j],
			    &cause) == 0)
				continue;
			causes_add(errs, "%s:%d: listener '%s': %s", lc->file,
			    lc->line, lc->name, cause);
			free(cause);
			listener_reload_abort(&next, &d->listeners, &replaced,
			    d->base);
			activation_store(&d->listeners);
			daemon_runtime_abort(d);
			config_unref(conf);
			return (-1);
		}
	}
	pools = daemon_pools_new(conf);
	daemon_carry_over_pools(conf, pools, old, d->pools);

	/* Nothing can fail from here on. */
	daemon_runtime_commit(d, conf);
	TAILQ_FOREACH(l, &next, entry) {
		if (l->fresh)
			log_info("listener '%s': listening on %s",
			    l->next_lc->name, l->text);
	}
	listener_reload_commit(&next, &d->listeners, &replaced);
	limits_configure(conf);		/* the caps attaching applies */
	TAILQ_CONCAT(&d->listeners, &next, entry);
	d->nlisteners = 0;
	TAILQ_FOREACH(l, &d->listeners, entry) {
		i = (size_t)(l->next_lc - conf->listeners);
		listener_attach(l, d->workers, conf, l->next_lc, pools[i]);
		l->next_lc = NULL;
		if (!l->enabled)
			listener_enable(l);
		d->nlisteners++;
	}
	activation_store(&d->listeners);
	daemon_pools_free(d->pools, d->npools);
	d->pools = pools;
	d->npools = conf->nlisteners;
	for (i = 0; i < d->npools; i++)
		backend_pool_start(d->pools[i], d->base);

	if (!daemon_same_string(conf->user, old->user) ||
	    !daemon_same_string(conf->group, old->group)) {
		log_warnx("user and group change only when acceptd is "
		    "restarted: reloaded without that change");
	}
	if (workers_count(conf) != d->workers->n) {
		log_warnx("workers changes only when acceptd is restarted: "
		    "reloaded with %zu workers still", d->workers->n);
	}
	if (!d->level_fixed)
		log_setlevel(conf->log_level);
	d->conf = conf;
	config_unref(old);
	return (0);
}

/* Are two optional strings the same? */
static int
daemon_same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == b);
	return (strcmp(a, b) == 0);
}

/*
 * A reload ended, successfully if errs is empty: log it, keep its result
 * for STATUS=, and send READY=1 as systemd expects after RELOADING=1.
 */
static void
daemon_reload_done(struct daemon *d, struct causes *errs)
{
	char	 status[1024], *p;
	size_t	 i;

	free(d->reload_error);
	d->reload_error = NULL;
	if (errs->n == 0) {
		d->reloads++;
		daemon_status(d, status, sizeof status);
		log_notice("reloaded: %s", status);
	} else {
		for (i = 0; i < errs->n; i++)
			log_errorx("%s", errs->v[i]);
		if (errs->n == 1)
			d->reload_error = xstrdup(errs->v[0]);
		else {
			xasprintf(&d->reload_error, "%s (and %zu more)",
			    errs->v[0], errs->n - 1);
		}
		/* STATUS= is one line. */
		for (p = d->reload_error; *p != '\0'; p++) {
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		}
		log_errorx("reload failed: the running configuration is kept");
		daemon_status(d, status, sizeof status);
	}
	systemd_ready(status);
	daemon_status_sent(d, status);
	daemon_runtime_reloaded(d, errs);
}

/* Wait for a reload still reading its file, and drop what it read. */
static void
daemon_reload_cancel(struct daemon *d)
{
	struct causes	 errs = { NULL, 0 };
	struct config	*conf;

	if (d->reload_ev != NULL) {
		event_free(d->reload_ev);
		d->reload_ev = NULL;
	}
	if (d->reload == NULL)
		return;
	conf = reload_finish(d->reload, &errs);
	d->reload = NULL;
	if (conf != NULL)
		config_unref(conf);
	causes_free(&errs);
}

/*
 * Begin a graceful stop: close the listening sockets at once, then let
 * the connections finish for up to shutdown_timeout.
 */
static void
daemon_stop(struct daemon *d)
{
	struct timeval	 tv;
	long long	 ms = d->conf->shutdown_timeout_ms;
	char		 t[32], status[1024];

	d->stopping = 1;
	daemon_status(d, status, sizeof status);
	systemd_stopping(status);
	daemon_status_sent(d, status);
	daemon_close_listeners(d);
	if (workers_active(d->workers) == 0) {
		log_notice("stopping");
		event_base_loopexit(d->base, NULL);
		return;
	}
	log_notice("stopping: waiting up to %s for %llu connection%s",
	    format_duration(ms, t, sizeof t), workers_active(d->workers),
	    workers_active(d->workers) == 1 ? "" : "s");
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(d->stop_timer, &tv);
}

/* shutdown_timeout is over: close what is left and leave the loop. */
static void
daemon_stop_timeout(evutil_socket_t fd, short events, void *arg)
{
	struct daemon	*d = arg;

	log_notice("shutdown timeout: closing %llu connection%s",
	    workers_active(d->workers), workers_active(d->workers) == 1 ?
	    "" : "s");
	workers_close_all(d->workers, END_SHUTDOWN);
	event_base_loopexit(d->base, NULL);
}

/*
 * A session closed: descriptors are free again, so end any accept
 * back-off; when stopping, the last one ends the loop.
 */
static void
daemon_session_closed(void *arg)
{
	struct daemon	*d = arg;
	struct listener	*l;

	if (d->stopping) {
		if (workers_active(d->workers) == 0)
			event_base_loopexit(d->base, NULL);
		return;
	}
	TAILQ_FOREACH(l, &d->listeners, entry)
		listener_resume(l);
}

/* Close every listening socket. */
static void
daemon_close_listeners(struct daemon *d)
{
	struct listener	*l;

	while ((l = TAILQ_FIRST(&d->listeners)) != NULL) {
		TAILQ_REMOVE(&d->listeners, l, entry);
		listener_free(l);
	}
	d->nlisteners = 0;
}

/* Free everything, sessions first; the base goes last. */
static void
daemon_cleanup(struct daemon *d)
{
	size_t	 i;

	daemon_runtime_stop(d);
	daemon_reload_cancel(d);
	daemon_close_listeners(d);
	activation_free();
	/* Lookups go before the workers: finishing them turns the loop. */
	for (i = 0; i < d->npools; i++)
		backend_pool_stop(d->pools[i]);
	resolve_job_cancel(d->resolving);
	d->resolving = NULL;
	if (d->resolving_conf != NULL)
		config_unref(d->resolving_conf);
	if (d->base != NULL)
		resolve_shutdown(d->base);
	workers_free(d->workers);	/* joins the threads */
	d->workers = NULL;
	daemon_pools_free(d->pools, d->npools);
	d->pools = NULL;
	d->npools = 0;
	for (i = 0; i < nitems(d->signals); i++) {
		if (d->signals[i] != NULL)
			event_free(d->signals[i]);
	}
	if (d->stop_timer != NULL)
		event_free(d->stop_timer);
	if (d->status_timer != NULL)
		event_free(d->status_timer);
	if (d->watchdog != NULL)
		event_free(d->watchdog);
	if (d->base != NULL)
		worker_drain_base(d->base);
	limits_shutdown();
	stats_shutdown();	/* no session is left to count */
	if (d->base != NULL)
		event_base_free(d->base);
	privileges_free(&d->priv);
	free(d->reload_error);
	free(d->status_sent);
	config_unref(d->conf);
}

/*
 * Start serving metrics and the control socket, as configured: before
 * privileges are dropped, so that the socket file can be made where only
 * root may, and given to the user acceptd becomes.
 */
static int
daemon_runtime_start(struct daemon *d)
{
	uid_t	 uid = (uid_t)-1;
	gid_t	 gid = (gid_t)-1;
	char	*cause;

	stats_init();
	d->source.view = daemon_view;
	d->source.reload = daemon_control_reload;
	d->source.arg = d;
	if (d->conf->metrics != NULL &&
	    (d->metrics = metrics_start(d->base, d->conf->metrics, &d->source,
	    &cause)) == NULL) {
		log_errorx("%s", cause);
		free(cause);
		return (-1);
	}
	if (d->priv.drop) {
		if (d->priv.user != NULL)
			uid = d->priv.uid;
		gid = d->priv.gid;
	}
	if (d->conf->control_socket != NULL &&
	    (d->control = control_start(d->base, d->conf->control_socket, uid,
	    gid, &d->source, &cause)) == NULL) {
		log_errorx("%s", cause);
		free(cause);
		return (-1);
	}
	return (0);
}

/*
 * A reload changes metrics or control_socket: open the new ones now, so
 * that a failure fails the reload with nothing changed.
 */
static int
daemon_runtime_prepare(struct daemon *d, struct config *conf,
    struct causes *errs)
{
	char	*cause;

	if (!daemon_same_string(conf->metrics, d->conf->metrics) &&
	    conf->metrics != NULL) {
		d->metrics_next = metrics_start(d->base, conf->metrics,
		    &d->source, &cause);
		if (d->metrics_next == NULL) {
			causes_add(errs, "%s: %s", conf->path, cause);
			free(cause);
			return (-1);
		}
	}
	if (!daemon_same_string(conf->control_socket,
	    d->conf->control_socket) && conf->control_socket != NULL) {
		/* Privileges are dropped: the socket is ours already. */
		d->control_next = control_start(d->base, conf->control_socket,
		    (uid_t)-1, (gid_t)-1, &d->source, &cause);
		if (d->control_next == NULL) {
			causes_add(errs, "%s: %s", conf->path, cause);
			free(cause);
			daemon_runtime_abort(d);
			return (-1);
		}
	}
	return (0);
}

/*
 * The reload is applied: the new metrics and control socket replace the
 * old ones. The old control socket stops listening but keeps its
 * clients, one of which may wait for this reload's result.
 */
static void
daemon_runtime_commit(struct daemon *d, struct config *conf)
{
	if (!daemon_same_string(conf->metrics, d->conf->metrics)) {
		metrics_free(d->metrics);
		d->metrics = d->metrics_next;
		d->metrics_next = NULL;
	}
	if (!daemon_same_string(conf->control_socket,
	    d->conf->control_socket)) {
		control_free(d->control_old);
		d->control_old = d->control;
		if (d->control_old != NULL)
			control_retire(d->control_old);
		d->control = d->control_next;
		d->control_next = NULL;
	}
}

/* The reload failed: close what daemon_runtime_prepare opened. */
static void
daemon_runtime_abort(struct daemon *d)
{
	metrics_free(d->metrics_next);
	d->metrics_next = NULL;
	control_free(d->control_next);
	d->control_next = NULL;
}

/* A reload ended: count it, and answer acceptctl reload. */
static void
daemon_runtime_reloaded(struct daemon *d, struct causes *errs)
{
	if (errs->n > 0)
		d->reload_failures++;
	control_reload_done(d->control, d->reload_seq, errs);
	control_reload_done(d->control_old, d->reload_seq, errs);
}

/* Stop serving metrics and the control socket. */
static void
daemon_runtime_stop(struct daemon *d)
{
	daemon_runtime_abort(d);
	metrics_free(d->metrics);
	d->metrics = NULL;
	control_free(d->control);
	d->control = NULL;
	control_free(d->control_old);
	d->control_old = NULL;
}

/* What runs now, for stats.c (metrics and the control socket). */
static void
daemon_view(void *arg, struct stats_view *v)
{
	struct daemon	*d = arg;

	v->conf = d->conf;
	v->listeners = &d->listeners;
	v->pools = d->pools;
	v->npools = d->npools;
	v->workers = d->workers != NULL ? d->workers->w : NULL;
	v->nworkers = d->workers != NULL ? d->workers->n : 0;
	v->reloads_ok = d->reloads;
	v->reloads_failed = d->reload_failures;
}

/*
 * acceptctl reload: the same path as SIGHUP. *seq is the reload whose end
 * answers: this one, or the one that follows the reload in progress.
 */
static int
daemon_control_reload(void *arg, unsigned long long *seq)
{
	struct daemon	*d = arg;

	if (d->stopping || !d->serving)
		return (-1);
	*seq = d->reload_seq + 1;
	daemon_reload_begin(d);
	return (0);
}

/*
 * Run the proxy until stopped; returns the exit status. With level_fixed,
 * the log level came from the command line and reloads leave it alone.
 */
int
daemon_run(struct config *conf, int level_fixed)
{
	struct daemon	 d;
	struct listener	*l;
	char		 status[1024], *cause;
	int		 rc = 1;

	memset(&d, 0, sizeof d);
	d.conf = config_ref(conf);
	d.level_fixed = level_fixed;
	TAILQ_INIT(&d.listeners);

	daemon_ignore_sigpipe();
	daemon_raise_nofile();
	log_set_journal_sink(systemd_journal_send);
	if (privileges_lookup(conf, &d.priv, &cause) == -1) {
		log_errorx("%s", cause);
		free(cause);
		goto out;
	}
	if (daemon_setup(&d) == -1 || daemon_listen(&d) == -1 ||
	    daemon_runtime_start(&d) == -1)
		goto out;
	/* Before any thread starts: capabilities are per thread. */
	if (privileges_drop(&d.priv, &cause) == -1) {
		log_errorx("cannot drop privileges: %s", cause);
		free(cause);
		goto out;
	}
	if (d.priv.drop) {
		log_notice("running as user %s, group %u", d.priv.user != NULL ?
		    d.priv.user : "root", (unsigned int)d.priv.gid);
	}
	limits_configure(d.conf);	/* once the sockets are open */
	if (workers_start(d.workers, &cause) == -1) {
		log_errorx("%s", cause);
		free(cause);
		goto out;
	}
	if (daemon_resolve(&d) == -1)
		goto out;
	if (d.stopping) {
		rc = 0;
		goto out;
	}

	log_start_writer();
	TAILQ_FOREACH(l, &d.listeners, entry) {
		log_info("listener '%s': listening on %s", l->lc->name,
		    l->text);
		listener_enable(l);
	}
	daemon_status(&d, status, sizeof status);
	systemd_ready(status);
	daemon_status_sent(&d, status);
	log_notice("started: %s", status);

	d.serving = 1;
	if (d.reload_again) {
		d.reload_again = 0;
		daemon_reload_begin(&d);
	}
	if (event_base_dispatch(d.base) == -1)
		log_errorx("event loop failed");
	else
		rc = 0;
	if (workers_active(d.workers) != 0)
		workers_close_all(d.workers, END_SHUTDOWN);
	log_notice("stopped");

 out:
	daemon_cleanup(&d);
	return (rc);
}
