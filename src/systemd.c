/*
 * Every sd-daemon call acceptd makes. Return values of sd_notify are
 * ignored as the man page recommends: 0 means no $NOTIFY_SOCKET.
 */
#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "acceptd.h"

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

/* Tell systemd the service is stopping. */
void
systemd_stopping(void)
{
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

/* Is the watchdog enabled for us? Sets its period in microseconds. */
int
systemd_watchdog_usec(unsigned long long *usec)
{
	uint64_t	 u;

	if (sd_watchdog_enabled(0, &u) <= 0)
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
