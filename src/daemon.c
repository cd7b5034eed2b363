/*
 * The daemon: raise the descriptor limit, bind every listen address, run
 * the event loop, and handle the signals that stop it.
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

#include "acceptd.h"

struct daemon {
	struct config		*conf;
	struct event_base	*base;
	struct worker		*worker;
	struct listener_list	 listeners;
	size_t			 nlisteners;
	struct backend_pool	**pools;	/* one per listener_conf */
	size_t			 npools;
	struct event		*signals[3];
	struct event		*stop_timer;
	int			 stopping;
};

static void	 daemon_ignore_sigpipe(void);
static void	 daemon_raise_nofile(void);
static int	 daemon_setup(struct daemon *);
static int	 daemon_listen(struct daemon *);
static void	 daemon_status(struct daemon *, char *, size_t);
static void	 daemon_signal(evutil_socket_t, short, void *);
static void	 daemon_stop(struct daemon *);
static void	 daemon_stop_timeout(evutil_socket_t, short, void *);
static void	 daemon_session_closed(struct worker *, void *);
static void	 daemon_close_listeners(struct daemon *);
static void	 daemon_cleanup(struct daemon *);

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

/* Create the event base, the worker, the backend pools and the signals. */
static int
daemon_setup(struct daemon *d)
{
	static const int	 sigs[] = { SIGHUP, SIGTERM, SIGINT };
	size_t			 i;

	if ((d->base = event_base_new()) == NULL) {
		log_errorx("cannot create the event loop");
		return (-1);
	}
	/* With workers = 1 the worker runs on the main loop. */
	if ((d->worker = worker_new(d->base)) == NULL) {
		log_errorx("cannot create the worker");
		return (-1);
	}
	worker_set_closed_cb(d->worker, daemon_session_closed, d);

	d->npools = d->conf->nlisteners;
	d->pools = xcalloc(d->npools, sizeof *d->pools);
	for (i = 0; i < d->npools; i++)
		d->pools[i] = backend_pool_new(d->conf, &d->conf->listeners[i]);

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
	return (0);
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
				listener_attach(l, d->worker, d->conf, lc,
				    d->pools[i]);
		}
	}
	d->nlisteners = 0;
	TAILQ_FOREACH(l, &d->listeners, entry)
		d->nlisteners++;
	return (0);
}

/* One line for systemd's STATUS= and the startup notice. */
static void
daemon_status(struct daemon *d, char *buf, size_t len)
{
	snprintf(buf, len, "%zu listener%s on %zu socket%s",
	    d->conf->nlisteners, d->conf->nlisteners == 1 ? "" : "s",
	    d->nlisteners, d->nlisteners == 1 ? "" : "s");
}

/*
 * Signals, from the event loop (not signal context). SIGHUP will reload;
 * SIGTERM and SIGINT stop, and a second one exits at once.
 */
static void
daemon_signal(evutil_socket_t sig, short events, void *arg)
{
	struct daemon	*d = arg;

	switch (sig) {
	case SIGHUP:
		log_warnx("SIGHUP: reload is not built yet in this version; "
		    "the configuration is unchanged");
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
 * Begin a graceful stop: close the listening sockets at once, then let
 * the connections finish for up to shutdown_timeout.
 */
static void
daemon_stop(struct daemon *d)
{
	struct timeval	 tv;
	long long	 ms = d->conf->shutdown_timeout_ms;
	char		 t[32];

	d->stopping = 1;
	systemd_stopping();
	daemon_close_listeners(d);
	if (d->worker->active == 0) {
		log_notice("stopping");
		event_base_loopexit(d->base, NULL);
		return;
	}
	log_notice("stopping: waiting up to %s for %llu connection%s",
	    format_duration(ms, t, sizeof t), d->worker->active,
	    d->worker->active == 1 ? "" : "s");
	systemd_status("stopping: %llu connection%s left", d->worker->active,
	    d->worker->active == 1 ? "" : "s");
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
	    d->worker->active, d->worker->active == 1 ? "" : "s");
	worker_close_all(d->worker, END_SHUTDOWN);
	event_base_loopexit(d->base, NULL);
}

/*
 * A session closed: descriptors are free again, so end any accept
 * back-off; when stopping, the last one ends the loop.
 */
static void
daemon_session_closed(struct worker *w, void *arg)
{
	struct daemon	*d = arg;
	struct listener	*l;

	if (d->stopping) {
		if (w->active == 0)
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

	daemon_close_listeners(d);
	if (d->worker != NULL) {
		worker_free(d->worker);
		d->worker = NULL;
	}
	for (i = 0; i < d->npools; i++)
		backend_pool_unref(d->pools[i]);
	free(d->pools);
	for (i = 0; i < nitems(d->signals); i++) {
		if (d->signals[i] != NULL)
			event_free(d->signals[i]);
	}
	if (d->stop_timer != NULL)
		event_free(d->stop_timer);
	if (d->base != NULL)
		event_base_free(d->base);
}

/* Run the proxy until stopped; returns the exit status. */
int
daemon_run(struct config *conf)
{
	struct daemon	 d;
	struct listener	*l;
	char		 status[256];
	int		 rc = 1;

	memset(&d, 0, sizeof d);
	d.conf = conf;
	TAILQ_INIT(&d.listeners);

	daemon_ignore_sigpipe();
	daemon_raise_nofile();
	if (daemon_setup(&d) == -1 || daemon_listen(&d) == -1)
		goto out;

	log_start_writer();
	TAILQ_FOREACH(l, &d.listeners, entry) {
		log_info("listener '%s': listening on %s", l->lc->name,
		    l->text);
		listener_enable(l);
	}
	daemon_status(&d, status, sizeof status);
	systemd_ready(status);
	log_notice("started: %s", status);

	if (event_base_dispatch(d.base) == -1)
		log_errorx("event loop failed");
	else
		rc = 0;
	if (d.worker->active != 0)
		worker_close_all(d.worker, END_SHUTDOWN);
	log_notice("stopped");

 out:
	daemon_cleanup(&d);
	return (rc);
}
