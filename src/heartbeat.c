/*
 * Heartbeats: each worker loop bumps a counter from a timer of its own;
 * the main loop's watchdog timer feeds systemd only if every counter
 * moved since its last tick, so that one stuck loop stops the pings.
 * Pure, so the unit tests call it directly.
 */
#include <sys/types.h>

#include <stddef.h>

#include "acceptd.h"

/*
 * Did every one of the n counters in beats move since seen (the values
 * at the last look)? seen takes the new values either way; *stale (if
 * not NULL) gets the first that did not move.
 */
int
heartbeat_fresh(const unsigned long long *beats, unsigned long long *seen,
    size_t n, size_t *stale)
{
	size_t	 i;
	int	 fresh = 1;

	for (i = 0; i < n; i++) {
		if (beats[i] == seen[i] && fresh) {
			fresh = 0;
			if (stale != NULL)
				*stale = i;
		}
		seen[i] = beats[i];
	}
	return (fresh);
}
