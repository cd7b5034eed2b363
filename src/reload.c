/*
 * Reload, the reading part: check the configuration file in a child
 * process (libconfig 1.5 may exit() on some inputs), then load it, on a
 * thread of its own so that the event loop keeps serving meanwhile. The
 * loop learns that it is done when the pipe becomes readable.
 */
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acceptd.h"

struct reload {
	char		*path;
	pthread_t	 thread;
	int		 pipe[2];	/* [0] readable once done */
	struct config	*conf;		/* the result, or NULL */
	struct causes	 causes;	/* why not */
};

static void	*reload_main(void *);

/* The thread: check in a child, then load here; then say so. */
static void *
reload_main(void *arg)
{
	struct reload	*r = arg;
	char		 c = 'd';
	ssize_t		 n;

	if (config_check_in_child(r->path, &r->causes) == 0)
		r->conf = config_load(r->path, &r->causes);
	do
		n = write(r->pipe[1], &c, 1);
	while (n == -1 && errno == EINTR);
	return (NULL);
}

/*
 * Start reading the file at path. Returns NULL with *cause set if the
 * thread cannot be started.
 */
struct reload *
reload_start(const char *path, char **cause)
{
	struct reload	*r;
	sigset_t	 all, old;
	int		 error;

	r = xcalloc(1, sizeof *r);
	r->path = xstrdup(path);
	if (pipe2(r->pipe, O_CLOEXEC|O_NONBLOCK) == -1) {
		xasprintf(cause, "cannot reload: pipe: %s", strerror(errno));
		free(r->path);
		free(r);
		return (NULL);
	}
	/*
	 * Signals belong to the event loop. The check's child inherits this
	 * mask too, so a signal sent to the whole group (systemd stopping
	 * the unit, ^C) never runs the loop's handler in the child.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	error = pthread_create(&r->thread, NULL, reload_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error != 0) {
		xasprintf(cause, "cannot reload: thread: %s", strerror(error));
		close(r->pipe[0]);
		close(r->pipe[1]);
		free(r->path);
		free(r);
		return (NULL);
	}
	return (r);
}

/* The descriptor that becomes readable once the file is read. */
int
reload_fd(const struct reload *r)
{
	return (r->pipe[0]);
}

/*
 * Wait for the thread (at once if the pipe said it is done) and free the
 * reload. Returns the new configuration, or NULL with every error added
 * to errs.
 */
struct config *
reload_finish(struct reload *r, struct causes *errs)
{
	struct config	*conf;
	size_t		 i;

	pthread_join(r->thread, NULL);
	conf = r->conf;
	for (i = 0; i < r->causes.n; i++)
		causes_add(errs, "%s", r->causes.v[i]);
	if (conf == NULL && r->causes.n == 0)
		causes_add(errs, "%s: configuration could not be read",
		    r->path);
	causes_free(&r->causes);
	close(r->pipe[0]);
	close(r->pipe[1]);
	free(r->path);
	free(r);
	return (conf);
}
