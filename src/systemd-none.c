/*
 * Built with --without-systemd: acceptd never notifies anybody, the
 * watchdog is never enabled, and there is no journal to send entries to.
 */
#include <sys/types.h>

#include "acceptd.h"

/* No service manager to tell. */
void
systemd_ready(const char *status)
{
}

/* No service manager to tell. */
void
systemd_reloading(void)
{
}

/* No service manager to tell. */
void
systemd_stopping(const char *status)
{
}

/* No service manager to tell. */
void
systemd_status(const char *fmt, ...)
{
}

/* The watchdog is never enabled. */
int
systemd_watchdog_usec(unsigned long long *usec)
{
	return (0);
}

/* No watchdog to feed. */
void
systemd_watchdog_ping(void)
{
}

/* No journal: the caller writes the line to stderr instead. */
int
systemd_journal_send(const char *const *fields, size_t n)
{
	return (-1);
}

/* Nobody hands sockets over. */
int
systemd_listen_fds(int *first, char ***names, char **cause)
{
	*first = 3;
	*names = NULL;
	return (0);
}

/* Never asked: no socket is ever handed over. */
int
systemd_is_listening(int fd)
{
	return (0);
}

/* No fd store. */
int
systemd_fdstore(int fd, const char *name)
{
	return (0);
}

/* No fd store. */
void
systemd_fdstore_remove(const char *name)
{
}
