/*
 * Workers: event loops, each with the sessions it runs and their
 * counters. Nothing on the data path reaches past its worker, so several
 * loops run side by side, one per thread.
 *
 * The main loop keeps accepting (memcached's pattern): listeners never
 * move, so socket activation, the fd store and reloads that keep sockets
 * open work as with one loop, and the caps are applied where the accept
 * happens, before a connection exists anywhere else. Each accepted
 * descriptor, with references to its configuration snapshot, backend
 * pool and counts, goes to the least loaded worker through that worker's
 * queue (a mutex, and event_active() on an event of its loop); from then
 * on the session lives on that worker alone. Closes come back to the main
 * loop as one coalesced event, so that listeners paused at a cap or in an
 * accept back-off resume there.
 *
 * With workers = 1 the single worker runs on the main loop itself: a
 * thread would only add a hand-off per connection, and nothing changes
 * from a build without threads.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "acceptd.h"

/* What the main loop asks of a worker thread. */
enum worker_job_kind {
	WORKER_JOB_ACCEPT,	/* start a session */
	WORKER_JOB_CALL,	/* run a function there and answer */
	WORKER_JOB_STOP		/* leave the loop */
};

struct worker_job {
	STAILQ_ENTRY(worker_job) entry;
	enum worker_job_kind	 kind;

	/* WORKER_JOB_ACCEPT: references the session takes over. */
	struct config		*conf;
	const struct listener_conf *lc;
	struct backend_pool	*pool;
	struct limits		*lim;
	int			 fd;
	int			 ticket;	/* a descriptor for its backend */
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;

	/* WORKER_JOB_CALL: the caller waits for done. */
	void			(*fn)(struct worker *, void *);
	void			*arg;
	int			 done;
};
STAILQ_HEAD(worker_jobs, worker_job);

/* A worker's thread and the queue it reads. */
struct worker_thread {
	pthread_t		 thread;
	int			 running;
	pthread_mutex_t		 lock;
	pthread_cond_t		 cond;		/* a call is done */
	struct worker_jobs	 jobs;
	struct event		*wake;		/* jobs are waiting */
	struct worker_job	 stop;		/* posted once, to stop */
};

static struct worker *worker_new_threaded(struct workers *, size_t);
static void	 worker_free_one(struct worker *);
static void	*worker_main(void *);
static void	 worker_wake(evutil_socket_t, short, void *);
static void	 worker_job_drop(struct worker_job *);
static void	 worker_post(struct worker *, struct worker_job *);
static void	 worker_beat(evutil_socket_t, short, void *);
static void	 worker_close_all_cb(struct worker *, void *);
static void	 worker_notify_main(struct worker *);
static void	 worker_closed_main(evutil_socket_t, short, void *);
static void	 workers_closed_inline(struct worker *, void *);
static struct worker *workers_pick(struct workers *);

/* Create a worker on an event base (run there by its owner). */
struct worker *
worker_new(struct event_base *base)
{
	struct worker	*w;

	if ((w = calloc(1, sizeof *w)) == NULL)
		return (NULL);
	w->base = base;
	TAILQ_INIT(&w->sessions);
	if ((w->relay = relay_pool_new()) == NULL) {
		free(w);
		return (NULL);
	}
	w->reserve_fd = -1;
	worker_has_reserve(w);
	return (w);
}

/* Free a worker of the main loop, closing what is left of its sessions. */
void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	w->closed_cb = NULL;
	worker_close_all(w, END_SHUTDOWN);
	if (w->heartbeat != NULL)
		event_free(w->heartbeat);
	if (w->reserve_fd != -1)
		close(w->reserve_fd);
	relay_pool_free(w->relay);
	free(w);
}

/*
 * Give up the spare descriptor so that a client accepted with the last
 * free one still gets its backend socket; -1 if it is already gone. The
 * worker's thread gives it up; only the main loop opens it again.
 */
int
worker_use_reserve(struct worker *w)
{
	int	 fd;

	fd = __atomic_exchange_n(&w->reserve_fd, -1, __ATOMIC_ACQ_REL);
	if (fd == -1)
		return (-1);
	close(fd);
	return (0);
}

/*
 * Is the spare descriptor there (reopened if it can be)? Listeners only
 * accept while it is, so that no client is taken without a backend.
 * Main loop only.
 */
int
worker_has_reserve(struct worker *w)
{
	int	 fd;

	if (__atomic_load_n(&w->reserve_fd, __ATOMIC_ACQUIRE) != -1)
		return (1);
	if ((fd = open("/dev/null", O_RDONLY|O_CLOEXEC)) == -1)
		return (0);
	__atomic_store_n(&w->reserve_fd, fd, __ATOMIC_RELEASE);
	return (1);
}

/* Set what is called each time a session of this worker closes. */
void
worker_set_closed_cb(struct worker *w, void (*cb)(struct worker *, void *),
    void *arg)
{
	w->closed_cb = cb;
	w->closed_arg = arg;
}

/* Count a new session. */
void
worker_session_opened(struct worker *w)
{
	__atomic_add_fetch(&w->active, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->accepted, 1, __ATOMIC_RELAXED);
}

/* Count a closed session, then tell the owner a slot is free. */
void
worker_session_closed(struct worker *w, enum end_reason why,
    unsigned long long in, unsigned long long out)
{
	__atomic_sub_fetch(&w->active, 1, __ATOMIC_RELEASE);
	if (why < END_MAX)
		__atomic_add_fetch(&w->ends[why], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->bytes_in, in, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->bytes_out, out, __ATOMIC_RELAXED);
	if (w->thread != NULL)
		worker_notify_main(w);
	else if (w->closed_cb != NULL)
		w->closed_cb(w, w->closed_arg);
}

/* Close every session of the worker (on the thread that runs it). */
void
worker_close_all(struct worker *w, enum end_reason why)
{
	struct session	*s;

	while ((s = TAILQ_FIRST(&w->sessions)) != NULL)
		session_close(s, why);
}

/*
 * Run fn on the worker's loop and wait for it: at once for a worker of
 * the main loop, through its queue for a thread. For rare requests of
 * the main loop (show conns, kill, shutdown); a worker never waits for
 * the main loop, so this cannot deadlock.
 */
void
worker_call(struct worker *w, void (*fn)(struct worker *, void *), void *arg)
{
	struct worker_thread	*t = w->thread;
	struct worker_job	 job;

	if (t == NULL || !t->running) {
		fn(w, arg);
		return;
	}
	memset(&job, 0, sizeof job);
	job.kind = WORKER_JOB_CALL;
	job.fn = fn;
	job.arg = arg;
	job.fd = -1;
	worker_post(w, &job);
	pthread_mutex_lock(&t->lock);
	while (!job.done)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

/* The worker's heartbeat counter, bumped by a timer of its loop. */
unsigned long long
worker_beats(const struct worker *w)
{
	return (__atomic_load_n(&w->beats, __ATOMIC_RELAXED));
}

/* The heartbeat: the worker's loop turns. */
static void
worker_beat(evutil_socket_t fd, short events, void *arg)
{
	struct worker	*w = arg;

	__atomic_add_fetch(&w->beats, 1, __ATOMIC_RELAXED);
}

/* Queue a job for a worker thread and wake its loop. */
static void
worker_post(struct worker *w, struct worker_job *job)
{
	struct worker_thread	*t = w->thread;

	pthread_mutex_lock(&t->lock);
	STAILQ_INSERT_TAIL(&t->jobs, job, entry);
	pthread_mutex_unlock(&t->lock);
	event_active(t->wake, EV_READ, 0);
}

/* Jobs are waiting: take them all and do them, in order. */
static void
worker_wake(evutil_socket_t fd, short events, void *arg)
{
	struct worker		*w = arg;
	struct worker_thread	*t = w->thread;
	struct worker_jobs	 jobs;
	struct worker_job	*job;
	unsigned long long	 before;
	int			 spare;

	STAILQ_INIT(&jobs);
	pthread_mutex_lock(&t->lock);
	STAILQ_CONCAT(&jobs, &t->jobs);
	pthread_mutex_unlock(&t->lock);

	while ((job = STAILQ_FIRST(&jobs)) != NULL) {
		STAILQ_REMOVE_HEAD(&jobs, entry);
		if (job->kind == WORKER_JOB_STOP) {
			/* Posted last: nothing follows it. */
			event_base_loopbreak(w->base);
			continue;
		}
		if (job->kind == WORKER_JOB_CALL) {
			job->fn(w, job->arg);
			pthread_mutex_lock(&t->lock);
			job->done = 1;
			pthread_cond_broadcast(&t->cond);
			pthread_mutex_unlock(&t->lock);
			continue;
		}
		/* The ticket is this session's spare for its backend. */
		if (job->ticket != -1) {
			spare = __atomic_exchange_n(&w->reserve_fd,
			    job->ticket, __ATOMIC_ACQ_REL);
			job->ticket = -1;
			if (spare != -1)
				close(spare);
		}
		before = __atomic_load_n(&w->accepted, __ATOMIC_RELAXED);
		session_accept(w, job->conf, job->lc, job->pool, job->lim,
		    job->fd, (struct sockaddr *)&job->ss, job->sslen);
		job->fd = -1;
		/* Opened first, then no longer queued: never 0 between. */
		__atomic_sub_fetch(&w->queued, 1, __ATOMIC_RELEASE);
		/* Dropped before a session existed: its slot is free. */
		if (__atomic_load_n(&w->accepted, __ATOMIC_RELAXED) == before)
			worker_notify_main(w);
		worker_job_drop(job);
	}
}

/* Free an accept job, with what it still holds. */
static void
worker_job_drop(struct worker_job *job)
{
	if (job->fd != -1) {
		close(job->fd);
		limits_close(job->lim);
	}
	if (job->ticket != -1)
		close(job->ticket);
	config_unref(job->conf);
	backend_pool_unref(job->pool);
	limits_unref(job->lim);
	free(job);
}

/* The thread of a worker: run its loop until told to stop. */
static void *
worker_main(void *arg)
{
	struct worker	*w = arg;
	char		 name[16];

	/* Seen in top -H and /proc/PID/task/TID/comm. */
	snprintf(name, sizeof name, "acceptd-w%zu", w->index);
	pthread_setname_np(pthread_self(), name);
	worker_beat(-1, 0, w);
	if (event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY) == -1)
		log_errorx("worker %zu: event loop failed", w->index);
	/* Stopped: what is left ends here, on its own thread. */
	worker_close_all(w, END_SHUTDOWN);
	return (NULL);
}

/* A worker thread's session closed: wake the main loop, once. */
static void
worker_notify_main(struct worker *w)
{
	struct workers	*ws = w->group;

	if (__atomic_exchange_n(&ws->closed_pending, 1, __ATOMIC_SEQ_CST) == 0)
		event_active(ws->closed_ev, EV_READ, 0);
}

/* On the main loop: sessions of worker threads closed. */
static void
worker_closed_main(evutil_socket_t fd, short events, void *arg)
{
	struct workers	*ws = arg;

	/* Cleared first: closes from now on wake us again. */
	__atomic_exchange_n(&ws->closed_pending, 0, __ATOMIC_SEQ_CST);
	if (ws->closed_cb != NULL)
		ws->closed_cb(ws->closed_arg);
}

/* The closed callback of a worker of the main loop. */
static void
workers_closed_inline(struct worker *w, void *arg)
{
	struct workers	*ws = arg;

	if (ws->closed_cb != NULL)
		ws->closed_cb(ws->closed_arg);
}

/* A worker with a loop and a thread of its own (not started yet). */
static struct worker *
worker_new_threaded(struct workers *ws, size_t index)
{
	struct event_base	*base;
	struct worker		*w;
	struct worker_thread	*t;

	if ((base = event_base_new()) == NULL)
		return (NULL);
	if ((w = worker_new(base)) == NULL) {
		event_base_free(base);
		return (NULL);
	}
	w->group = ws;
	w->index = index;
	if ((t = calloc(1, sizeof *t)) == NULL)
		goto fail;
	w->thread = t;
	STAILQ_INIT(&t->jobs);
	if (pthread_mutex_init(&t->lock, NULL) != 0) {
		free(t);
		w->thread = NULL;
		goto fail;
	}
	if (pthread_cond_init(&t->cond, NULL) != 0) {
		pthread_mutex_destroy(&t->lock);
		free(t);
		w->thread = NULL;
		goto fail;
	}
	if ((t->wake = event_new(base, -1, 0, worker_wake, w)) == NULL)
		goto fail;
	return (w);

 fail:
	worker_free_one(w);
	return (NULL);
}

/*
 * Free a worker of the group once its thread (if any) is gone: jobs that
 * never ran are dropped, then its loop.
 */
static void
worker_free_one(struct worker *w)
{
	struct worker_thread	*t = w->thread;
	struct worker_job	*job;
	struct event_base	*base = w->base;

	if (t == NULL) {
		worker_free(w);
		return;
	}
	while ((job = STAILQ_FIRST(&t->jobs)) != NULL) {
		STAILQ_REMOVE_HEAD(&t->jobs, entry);
		if (job->kind != WORKER_JOB_ACCEPT)
			continue;	/* nobody waits for those now */
		__atomic_sub_fetch(&w->queued, 1, __ATOMIC_RELAXED);
		worker_job_drop(job);
	}
	worker_close_all(w, END_SHUTDOWN);
	if (t->wake != NULL)
		event_free(t->wake);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
	w->thread = NULL;
	w->closed_cb = NULL;
	worker_free(w);
	worker_drain_base(base);
	event_base_free(base);
}

/*
 * Run what freed bufferevents left pending before their base goes: a
 * deferred callback holds a reference that only running it drops, and
 * event_base_free() cancels it instead, which leaks the bufferevent.
 */
void
worker_drain_base(struct event_base *base)
{
	int	 i;

	for (i = 0; i < 4; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

/*
 * How many workers a configuration asks for: its number, or one per
 * online CPU for "auto", at most 1024.
 */
size_t
workers_count(const struct config *conf)
{
	long	 n;

	if (conf->workers > 0)
		return ((size_t)conf->workers);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > WORKERS_MAX)
		n = WORKERS_MAX;
	return ((size_t)n);
}

/*
 * Create n workers: one on the main loop when n is 1, else n with a loop
 * each, whose threads workers_start starts. NULL on failure.
 */
struct workers *
workers_new(struct event_base *main_base, size_t n)
{
	struct workers	*ws;
	size_t		 i;

	if ((ws = calloc(1, sizeof *ws)) == NULL)
		return (NULL);
	ws->main_base = main_base;
	ws->reserve_fd = -1;
	if ((ws->w = calloc(n, sizeof *ws->w)) == NULL)
		goto fail;
	if (n == 1) {
		if ((ws->w[0] = worker_new(main_base)) == NULL)
			goto fail;
		ws->n = 1;
		worker_set_closed_cb(ws->w[0], workers_closed_inline, ws);
		return (ws);
	}
	ws->reserve_fd = open("/dev/null", O_RDONLY|O_CLOEXEC);
	ws->closed_ev = event_new(main_base, -1, 0, worker_closed_main, ws);
	if (ws->closed_ev == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		if ((ws->w[i] = worker_new_threaded(ws, i)) == NULL)
			goto fail;
		ws->n++;
	}
	return (ws);

 fail:
	workers_free(ws);
	return (NULL);
}

/*
 * Start the worker threads, with every signal blocked (signals belong to
 * the main loop). -1 with *cause set; those started are stopped by
 * workers_free.
 */
int
workers_start(struct workers *ws, char **cause)
{
	struct worker_thread	*t;
	sigset_t		 all, old;
	size_t			 i;
	int			 error = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < ws->n; i++) {
		if ((t = ws->w[i]->thread) == NULL || t->running)
			continue;
		if ((error = pthread_create(&t->thread, NULL, worker_main,
		    ws->w[i])) != 0)
			break;
		t->running = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error != 0) {
		xasprintf(cause, "cannot start worker %zu: %s", i,
		    strerror(error));
		return (-1);
	}
	if (ws->n > 1)
		log_info("%zu workers started", ws->n);
	return (0);
}

/*
 * Stop the worker threads (each closes what it still runs, end=shutdown)
 * and free every worker; the main loop's base is left alone.
 */
void
workers_free(struct workers *ws)
{
	struct worker_thread	*t;
	size_t			 i;

	if (ws == NULL)
		return;
	/* A job, not event_base_loopbreak: that is lost before the loop. */
	for (i = 0; i < ws->n; i++) {
		t = ws->w[i]->thread;
		if (t != NULL && t->running) {
			t->stop.kind = WORKER_JOB_STOP;
			t->stop.fd = -1;
			worker_post(ws->w[i], &t->stop);
		}
	}
	for (i = 0; i < ws->n; i++) {
		t = ws->w[i]->thread;
		if (t != NULL && t->running) {
			pthread_join(t->thread, NULL);
			t->running = 0;
		}
	}
	ws->closed_cb = NULL;
	for (i = 0; i < ws->n; i++)
		worker_free_one(ws->w[i]);
	if (ws->closed_ev != NULL)
		event_free(ws->closed_ev);
	if (ws->reserve_fd != -1)
		close(ws->reserve_fd);
	free(ws->w);
	free(ws->seen);
	free(ws);
}

/* Set what the main loop calls when sessions closed (coalesced). */
void
workers_set_closed_cb(struct workers *ws, void (*cb)(void *), void *arg)
{
	ws->closed_cb = cb;
	ws->closed_arg = arg;
}

/*
 * The least loaded worker: the fewest sessions, counting those handed
 * over and not started yet; ties go round, so that short connections
 * spread too.
 */
static struct worker *
workers_pick(struct workers *ws)
{
	unsigned long long	 load, best_load = 0;
	size_t			 i, k, best = 0;

	for (k = 0; k < ws->n; k++) {
		i = (ws->next + k) % ws->n;
		load = __atomic_load_n(&ws->w[i]->active, __ATOMIC_RELAXED) +
		    __atomic_load_n(&ws->w[i]->queued, __ATOMIC_RELAXED);
		if (k == 0 || load < best_load) {
			best = i;
			best_load = load;
		}
	}
	ws->next = (best + 1) % ws->n;
	return (ws->w[best]);
}

/*
 * Hand an accepted connection to a worker (main loop). The slot counted
 * in lim is the session's to release, or the job's if it never starts.
 */
void
workers_accept(struct workers *ws, struct config *conf,
    const struct listener_conf *lc, struct backend_pool *pool,
    struct limits *lim, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct worker		*w;
	struct worker_job	*job;

	if (ws->n == 1 && ws->w[0]->thread == NULL) {
		session_accept(ws->w[0], conf, lc, pool, lim, fd, sa, salen);
		return;
	}
	w = workers_pick(ws);
	if ((job = calloc(1, sizeof *job)) == NULL) {
		log_warn("listener '%s': dropping a connection", lc->name);
		close(fd);
		limits_close(lim);
		return;
	}
	job->kind = WORKER_JOB_ACCEPT;
	job->conf = config_ref(conf);
	job->lc = lc;
	job->pool = backend_pool_ref(pool);
	job->lim = limits_ref(lim);
	job->fd = fd;
	/*
	 * A descriptor for the backend travels with the client, so that
	 * accepting the last free one never leaves a session without: a
	 * new one, or else the main loop's spare (and accepting pauses).
	 */
	if ((job->ticket = open("/dev/null", O_RDONLY|O_CLOEXEC)) == -1) {
		job->ticket = ws->reserve_fd;
		ws->reserve_fd = -1;
	}
	if (salen > sizeof job->ss)
		salen = sizeof job->ss;
	memcpy(&job->ss, sa, salen);
	job->sslen = salen;
	__atomic_add_fetch(&w->queued, 1, __ATOMIC_RELAXED);
	worker_post(w, job);
}

/*
 * Is the spare descriptor of the accepting side there (reopened if it
 * can be)? The worker's own with workers = 1; else the main loop's,
 * which goes with a client when no other descriptor is left for it.
 */
int
workers_has_reserve(struct workers *ws)
{
	if (ws->n == 1 && ws->w[0]->thread == NULL)
		return (worker_has_reserve(ws->w[0]));
	if (ws->reserve_fd == -1)
		ws->reserve_fd = open("/dev/null", O_RDONLY|O_CLOEXEC);
	return (ws->reserve_fd != -1);
}

/* Sessions open or handed over and not started yet, on every worker. */
unsigned long long
workers_active(const struct workers *ws)
{
	unsigned long long	 n = 0;
	size_t			 i;

	for (i = 0; i < ws->n; i++) {
		n += __atomic_load_n(&ws->w[i]->queued, __ATOMIC_ACQUIRE);
		n += __atomic_load_n(&ws->w[i]->active, __ATOMIC_ACQUIRE);
	}
	return (n);
}

/* Sessions started so far, on every worker. */
unsigned long long
workers_accepted(const struct workers *ws)
{
	unsigned long long	 n = 0;
	size_t			 i;

	for (i = 0; i < ws->n; i++)
		n += __atomic_load_n(&ws->w[i]->accepted, __ATOMIC_RELAXED);
	return (n);
}

/* worker_close_all on the worker's own loop. */
static void
worker_close_all_cb(struct worker *w, void *arg)
{
	worker_close_all(w, *(enum end_reason *)arg);
}

/* Close every session of every worker, each on its own loop, and wait. */
void
workers_close_all(struct workers *ws, enum end_reason why)
{
	size_t	 i;

	for (i = 0; i < ws->n; i++)
		worker_call(ws->w[i], worker_close_all_cb, &why);
}

/*
 * Start a heartbeat timer on every worker's loop, every ms milliseconds:
 * workers_alive then tells whether each loop turned since its last call.
 */
int
workers_heartbeat(struct workers *ws, long long ms)
{
	struct timeval	 tv;
	size_t		 i;

	if (ms < 1)
		ms = 1;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if ((ws->seen = calloc(ws->n, sizeof *ws->seen)) == NULL)
		return (-1);
	for (i = 0; i < ws->n; i++) {
		ws->w[i]->heartbeat = event_new(ws->w[i]->base, -1, EV_PERSIST,
		    worker_beat, ws->w[i]);
		if (ws->w[i]->heartbeat == NULL ||
		    event_add(ws->w[i]->heartbeat, &tv) == -1)
			return (-1);
	}
	return (0);
}

/*
 * Did every worker's loop beat since the last call (main loop, from the
 * watchdog timer)? *stale gets the first worker that did not.
 */
int
workers_alive(struct workers *ws, size_t *stale)
{
	unsigned long long	 beats[WORKERS_MAX];
	size_t			 i;

	if (ws->seen == NULL)
		return (1);
	for (i = 0; i < ws->n; i++)
		beats[i] = worker_beats(ws->w[i]);
	return (heartbeat_fresh(beats, ws->seen, ws->n, stale));
}
