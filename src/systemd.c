/*
 * Every sd-daemon and sd-journal call acceptd makes. Return values of
 * sd_notify are ignored as the man page recommends: 0 means no
 * $NOTIFY_SOCKET, and a failure only costs the service manager a message.
 */
#include <sys/types.h>
#include <sys/uio.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "acceptd.h"

/* Most fields one journal entry carries. */
#define SYSTEMD_JOURNAL_FIELDS	32

/* Tell systemd startup or a reload is complete, with a status line. */
void
systemd_ready(const char *status)
{
	if (status != NULL)
		sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	else
		sd_notify(0, "READY=1");
}

/* Tell systemd a reload begins; READY=1 must follow, whatever happens. */
void
systemd_reloading(void)
{
	struct timespec		 ts;
	unsigned long long	 usec;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	usec = (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL;
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

/* Tell systemd the service is stopping, with a status line. */
void
systemd_stopping(const char *status)
{
	if (status != NULL)
		sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
	else
		sd_notify(0, "STOPPING=1");
}

/* Update the one-line STATUS= shown by systemctl status. */
void
systemd_status(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) != -1) {
		sd_notifyf(0, "STATUS=%s", s);
		free(s);
	}
	va_end(ap);
}

/*
 * Is the watchdog enabled for us ($WATCHDOG_USEC, and $WATCHDOG_PID our
 * pid when set)? Sets its period in microseconds.
 */
int
systemd_watchdog_usec(unsigned long long *usec)
{
	uint64_t	 u;

	if (sd_watchdog_enabled(0, &u) <= 0 || u == 0)
		return (0);
	*usec = u;
	return (1);
}

/* Feed the watchdog. */
void
systemd_watchdog_ping(void)
{
	sd_notify(0, "WATCHDOG=1");
}

/*
 * Send one structured entry to the journal: each field is "NAME=value".
 * Returns -1 when the journal did not take it.
 */
int
systemd_journal_send(const char *const *fields, size_t n)
{
	struct iovec	 iov[SYSTEMD_JOURNAL_FIELDS];
	size_t		 i;

	if (n == 0 || n > nitems(iov))
		return (-1);
	for (i = 0; i < n; i++) {
		iov[i].iov_base = (void *)(uintptr_t)fields[i];
		iov[i].iov_len = strlen(fields[i]);
	}
	return (sd_journal_sendv(iov, (int)n) < 0 ? -1 : 0);
}

/*
 * The sockets systemd handed over (socket unit first, then the fd store):
 * they are fds SD_LISTEN_FDS_START to SD_LISTEN_FDS_START + n - 1, and
 * *names gets one name for each (free each, then the array). $LISTEN_*
 * is unset so that it reaches no child. Returns n, or -1 with *cause set.
 */
int
systemd_listen_fds(int *first, char ***names, char **cause)
{
	int	 n;

	*first = SD_LISTEN_FDS_START;
	*names = NULL;
	n = sd_listen_fds_with_names(1, names);
	if (n < 0) {
		xasprintf(cause, "cannot take the sockets systemd passed: %s",
		    strerror(-n));
		return (-1);
	}
	return (n);
}

/* Is this fd a listening stream socket? */
int
systemd_is_listening(int fd)
{
	return (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0);
}

/*
 * Put a listening socket in systemd's fd store under a name (one name per
 * message: a name applies to every fd of its message). systemd says
 * nothing when the unit keeps no store. Returns 0 when there is no
 * $NOTIFY_SOCKET, 1 when sent, -1 when sending failed.
 */
int
systemd_fdstore(int fd, const char *name)
{
	char	*msg;
	int	 r;

	xasprintf(&msg, "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	free(msg);
	if (r < 0)
		log_debug("%s: %s: %s", __func__, name, strerror(-r));
	return (r < 0 ? -1 : r > 0);
}

/* Remove every fd stored under a name from systemd's fd store. */
void
systemd_fdstore_remove(const char *name)
{
	sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", name);
}
