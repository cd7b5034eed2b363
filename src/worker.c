/*
 * Workers: an event loop with the sessions it runs and their counters.
 * Nothing on the data path reaches past its worker, so that several loops
 * can run side by side, one per thread.
 */
#include <sys/types.h>
#include <sys/queue.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "acceptd.h"

/* Create a worker on an event base. */
struct worker *
worker_new(struct event_base *base)
{
	struct worker	*w;

	if ((w = calloc(1, sizeof *w)) == NULL)
		return (NULL);
	w->base = base;
	TAILQ_INIT(&w->sessions);
	w->reserve_fd = -1;
	worker_has_reserve(w);
	return (w);
}

/* Free a worker, closing what is left of its sessions. */
void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	w->closed_cb = NULL;
	worker_close_all(w, END_SHUTDOWN);
	if (w->reserve_fd != -1)
		close(w->reserve_fd);
	free(w);
}

/*
 * Give up the spare descriptor so that a client accepted with the last
 * free one still gets its backend socket; -1 if it is already gone.
 */
int
worker_use_reserve(struct worker *w)
{
	if (w->reserve_fd == -1)
		return (-1);
	close(w->reserve_fd);
	w->reserve_fd = -1;
	return (0);
}

/*
 * Is the spare descriptor there (reopened if it can be)? Listeners only
 * accept while it is, so that no client is taken without a backend.
 */
int
worker_has_reserve(struct worker *w)
{
	if (w->reserve_fd == -1)
		w->reserve_fd = open("/dev/null", O_RDONLY|O_CLOEXEC);
	return (w->reserve_fd != -1);
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
	w->active++;
	w->accepted++;
}

/* Count a closed session, then tell the owner a slot is free. */
void
worker_session_closed(struct worker *w, enum end_reason why,
    unsigned long long in, unsigned long long out)
{
	w->active--;
	if (why < END_MAX)
		w->ends[why]++;
	w->bytes_in += in;
	w->bytes_out += out;
	if (w->closed_cb != NULL)
		w->closed_cb(w, w->closed_arg);
}

/* Close every session of the worker. */
void
worker_close_all(struct worker *w, enum end_reason why)
{
	struct session	*s;

	while ((s = TAILQ_FIRST(&w->sessions)) != NULL)
		session_close(s, why);
}
