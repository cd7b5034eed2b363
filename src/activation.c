/*
 * Sockets handed over by systemd at startup, from a socket unit (socket
 * activation) or from an earlier acceptd through the fd store, matched
 * to listen addresses; and the fd store kept in step with the listening
 * sockets, at startup and after every reload.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "acceptd.h"

/* One socket systemd handed over. */
struct activation_fd {
	int			 fd;		/* -1: taken or closed */
	char			*name;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			 text[128];	/* its address, for logs */
	int			 unit;		/* from a socket unit */
	int			 named;		/* a listener has its name */
};

/* One socket in the fd store, as acceptd put it there (or found it). */
struct activation_stored {
	char			*name;
	ino_t			 ino;
	int			 fd;		/* to send it; -1 once gone */
};

static struct activation_fd	*activation_fds;
static size_t			 activation_nfds;
static struct activation_stored	*activation_store_v;
static size_t			 activation_store_n;

static int	 activation_is_unit_name(const char *);
static int	 activation_match(const struct activation_fd *,
		     const struct sockaddr *, socklen_t);
static void	 activation_close(struct activation_fd *);
static ino_t	 activation_inode(int);
static void	 activation_store_clear(struct activation_stored *, size_t);
static int	 activation_same_set(const struct activation_stored *, size_t,
		     const struct activation_stored *, size_t, const char *);
static int	 activation_seen(const struct activation_stored *, size_t,
		     const char *);

/*
 * The names systemd gives the fds of a socket unit unless the unit sets
 * FileDescriptorName=: the unit's own name, or "unknown". acceptd stores
 * its sockets under listener names, or "stored" when a name was lost.
 */
static int
activation_is_unit_name(const char *name)
{
	size_t	 len = strlen(name);

	if (strcmp(name, "unknown") == 0)
		return (1);
	return (len > 7 && strcmp(name + len - 7, ".socket") == 0);
}

/*
 * Take the sockets systemd passed ($LISTEN_FDS), check that each one is a
 * listening stream socket (Accept=yes passes connections: refused), and
 * note its address and name. Returns -1 with *cause set.
 */
int
activation_init(const struct config *conf, char **cause)
{
	struct activation_fd	*a;
	char			**names;
	int			 first, n, i;
	size_t			 j;

	if ((n = systemd_listen_fds(&first, &names, cause)) == -1)
		return (-1);
	if (n == 0) {
		free(names);
		return (0);
	}
	activation_fds = xcalloc((size_t)n, sizeof *activation_fds);
	activation_nfds = (size_t)n;
	for (i = 0; i < n; i++) {
		a = &activation_fds[i];
		a->fd = first + i;
		a->name = xstrdup(names != NULL && names[i] != NULL ?
		    names[i] : "unknown");
		a->unit = activation_is_unit_name(a->name);
		for (j = 0; j < conf->nlisteners; j++) {
			if (strcmp(conf->listeners[j].name, a->name) == 0)
				a->named = 1;
		}
		a->sslen = sizeof a->ss;
		if (getsockname(a->fd, (struct sockaddr *)&a->ss,
		    &a->sslen) == -1)
			a->sslen = 0;
		if (a->sslen == 0)
			snprintf(a->text, sizeof a->text, "?");
		else
			format_sockaddr((struct sockaddr *)&a->ss, a->sslen,
			    a->text, sizeof a->text);
		if (!a->unit) {
			activation_store_v = xreallocarray(activation_store_v,
			    activation_store_n + 1, sizeof *activation_store_v);
			activation_store_v[activation_store_n].name =
			    xstrdup(a->name);
			activation_store_v[activation_store_n].ino =
			    activation_inode(a->fd);
			activation_store_v[activation_store_n].fd = -1;
			activation_store_n++;
		}
	}
	if (names != NULL) {
		for (i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	for (j = 0; j < activation_nfds; j++) {
		a = &activation_fds[j];
		if (strcmp(a->name, "connection") == 0 ||
		    !systemd_is_listening(a->fd)) {
			xasprintf(cause, "socket %s (fd %d, named '%s') handed "
			    "over by systemd is not a listening stream socket "
			    "(Accept=yes is not supported)", a->text, a->fd,
			    a->name);
			activation_free();
			return (-1);
		}
		log_debug("%s: fd %d named '%s' on %s", __func__, a->fd,
		    a->name, a->text);
	}
	return (0);
}

/* Is this handed-over socket bound to that address? */
static int
activation_match(const struct activation_fd *a, const struct sockaddr *sa,
    socklen_t salen)
{
	return (a->fd != -1 && sockaddr_equal(
	    (const struct sockaddr *)&a->ss, a->sslen, sa, salen));
}

/*
 * The handed-over socket for an address of the listener name, if there
 * is one: first among the sockets named after the listener, then among
 * those that name no listener, by address. It is made non-blocking and
 * is the caller's from now on; *from says where it came from
 * (LISTENER_FROM_UNIT or LISTENER_FROM_STORE). -1: bind it yourself.
 */
int
activation_take(const char *name, const struct sockaddr *sa,
    socklen_t salen, int *from)
{
	struct activation_fd	*a = NULL;
	size_t			 i;
	int			 fd, flags;

	for (i = 0; i < activation_nfds; i++) {
		if (strcmp(activation_fds[i].name, name) == 0 &&
		    activation_match(&activation_fds[i], sa, salen)) {
			a = &activation_fds[i];
			break;
		}
	}
	for (i = 0; a == NULL && i < activation_nfds; i++) {
		if (!activation_fds[i].named &&
		    activation_match(&activation_fds[i], sa, salen))
			a = &activation_fds[i];
	}
	if (a == NULL)
		return (-1);
	fd = a->fd;
	a->fd = -1;
	/* systemd hands sockets over blocking unless NonBlocking=yes. */
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
		log_warn("listener '%s': %s: cannot make it non-blocking",
		    name, a->text);
	*from = a->unit ? LISTENER_FROM_UNIT : LISTENER_FROM_STORE;
	log_info("listener '%s': %s taken from systemd (%s, fd named '%s')",
	    name, a->text, a->unit ? "socket unit" : "socket unit or fd store",
	    a->name);
	return (fd);
}

/* Close a handed-over socket nobody took. */
static void
activation_close(struct activation_fd *a)
{
	if (a->fd != -1) {
		close(a->fd);
		a->fd = -1;
	}
}

/*
 * Every listen address is open: a socket-unit socket that none took is a
 * startup error (returns -1 with *cause set, and closes them all); a
 * stored one is closed, and activation_store removes it from the store.
 */
int
activation_finish(char **cause)
{
	struct activation_fd	*a;
	size_t			 i;

	for (i = 0; i < activation_nfds; i++) {
		a = &activation_fds[i];
		if (a->fd == -1 || !a->unit)
			continue;
		xasprintf(cause, "socket %s (fd %d, named '%s') from the socket "
		    "unit matches no listen address: name it after a listener "
		    "(FileDescriptorName=) and listen on the same address",
		    a->text, a->fd, a->name);
		for (i = 0; i < activation_nfds; i++)
			activation_close(&activation_fds[i]);
		return (-1);
	}
	for (i = 0; i < activation_nfds; i++) {
		a = &activation_fds[i];
		if (a->fd == -1)
			continue;
		log_notice("socket %s from the fd store (named '%s') matches "
		    "no listen address: closing it", a->text, a->name);
		activation_close(a);
	}
	for (i = 0; i < activation_nfds; i++)
		free(activation_fds[i].name);
	free(activation_fds);
	activation_fds = NULL;
	activation_nfds = 0;
	return (0);
}

/* The inode of a socket: the same in every process that holds it. */
static ino_t
activation_inode(int fd)
{
	struct stat	 st;

	if (fstat(fd, &st) == -1)
		return (0);
	return (st.st_ino);
}

/* Free a store list. */
static void
activation_store_clear(struct activation_stored *v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* Do two store lists hold the same sockets under the name? */
static int
activation_same_set(const struct activation_stored *a, size_t na,
    const struct activation_stored *b, size_t nb, const char *name)
{
	size_t	 i, j, ca = 0, cb = 0;

	for (i = 0; i < na; i++) {
		if (strcmp(a[i].name, name) != 0)
			continue;
		ca++;
		for (j = 0; j < nb; j++) {
			if (strcmp(b[j].name, name) == 0 && b[j].ino == a[i].ino)
				break;
		}
		if (j == nb)
			return (0);
	}
	for (j = 0; j < nb; j++) {
		if (strcmp(b[j].name, name) == 0)
			cb++;
	}
	return (ca == cb);
}

/* Is the name in the first n entries of the list? */
static int
activation_seen(const struct activation_stored *v, size_t n,
    const char *name)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (strcmp(v[i].name, name) == 0)
			return (1);
	}
	return (0);
}

/*
 * Keep systemd's fd store in step with the listening sockets (those of a
 * socket unit excepted: systemd holds them already). Per name (FDNAME =
 * listener name) whose sockets changed: FDSTOREREMOVE=1 drops them all,
 * then each socket of the name is stored again, one per message. So a
 * restart gets every socket back and no client is refused meanwhile.
 */
void
activation_store(struct listener_list *head)
{
	struct activation_stored	*cur = NULL, *old = activation_store_v;
	struct listener			*l;
	size_t				 ncur = 0, nold = activation_store_n;
	size_t				 i;
	int				 fd;

	TAILQ_FOREACH(l, head, entry) {
		if (l->adopted == LISTENER_FROM_UNIT || l->evl == NULL ||
		    l->lc == NULL)
			continue;
		fd = evconnlistener_get_fd(l->evl);
		cur = xreallocarray(cur, ncur + 1, sizeof *cur);
		cur[ncur].name = xstrdup(l->lc->name);
		cur[ncur].ino = activation_inode(fd);
		cur[ncur].fd = fd;
		ncur++;
	}
	/* All removals first: a socket may move from one name to another. */
	for (i = 0; i < nold; i++) {
		if (activation_seen(old, i, old[i].name) ||
		    activation_same_set(old, nold, cur, ncur, old[i].name))
			continue;
		log_debug("%s: FDSTOREREMOVE %s", __func__, old[i].name);
		systemd_fdstore_remove(old[i].name);
	}
	for (i = 0; i < ncur; i++) {
		if (activation_same_set(old, nold, cur, ncur, cur[i].name))
			continue;
		log_debug("%s: FDSTORE %s", __func__, cur[i].name);
		systemd_fdstore(cur[i].fd, cur[i].name);
	}
	activation_store_clear(old, nold);
	activation_store_v = cur;
	activation_store_n = ncur;
}

/* Close what was handed over and not taken, and forget the store. */
void
activation_free(void)
{
	size_t	 i;

	for (i = 0; i < activation_nfds; i++) {
		activation_close(&activation_fds[i]);
		free(activation_fds[i].name);
	}
	free(activation_fds);
	activation_fds = NULL;
	activation_nfds = 0;
	activation_store_clear(activation_store_v, activation_store_n);
	activation_store_v = NULL;
	activation_store_n = 0;
}
