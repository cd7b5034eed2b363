/*
 * Relay: bytes on their way one way through a session, either in a buffer
 * (copy) or in a pipe that splice(2) fills from one socket and empties into
 * the other (zero-copy). Buffers and pipes are taken from the worker's pool
 * only while bytes are in flight, so an idle connection holds neither.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acceptd.h"

/* Buffers kept for reuse by a worker, at most. */
#define RELAY_BUFS_KEPT		16
#define RELAY_BUFS_KEPT_BYTES	(2 * 1024 * 1024)
#define RELAY_SPLICE_FLAGS	(SPLICE_F_MOVE|SPLICE_F_NONBLOCK)

struct relay_buf_slot {
	char			*buf;
	size_t			 cap;
};

/* One worker's buffers and pipes; its thread alone uses it. */
struct relay_pool {
	struct relay_buf_slot	 bufs[RELAY_BUFS_KEPT];
	size_t			 nbufs;
	size_t			 bufs_bytes;
	int			 idle[RELAY_PIPES_MAX][2];
	size_t			 nidle;
	size_t			 taken;		/* pipes holding bytes */
};

/* Pipe descriptors open in the process, for the descriptor count. */
static long long relay_pipe_fds;
/* Pipes each worker may hold open: the descriptor budget sets it. */
static int relay_pipes_max = RELAY_PIPES_MAX;

static int	 relay_pipe_get(struct relay_pool *, struct relay_dir *);
static void	 relay_pipe_put(struct relay_pool *, struct relay_dir *);
static void	 relay_pipe_close(int[2]);
static int	 relay_buf_get(struct relay_pool *, struct relay_dir *,
		     size_t);
static void	 relay_buf_put(struct relay_pool *, struct relay_dir *);

/* A pool for a worker; NULL when out of memory. */
struct relay_pool *
relay_pool_new(void)
{
	return (calloc(1, sizeof (struct relay_pool)));
}

/* Free a pool: every session of its worker is closed already. */
void
relay_pool_free(struct relay_pool *p)
{
	size_t	 i;

	if (p == NULL)
		return;
	for (i = 0; i < p->nbufs; i++)
		free(p->bufs[i].buf);
	for (i = 0; i < p->nidle; i++)
		relay_pipe_close(p->idle[i]);
	free(p);
}

/* Pipe descriptors open in the process (idle or holding bytes). */
long long
relay_pipe_fds_open(void)
{
	return (__atomic_load_n(&relay_pipe_fds, __ATOMIC_RELAXED));
}

/*
 * Set how many pipes each worker may hold open (limits.c counts them in
 * the descriptor budget); a pool above it closes pipes as they come back.
 */
void
relay_set_pipes_max(int n)
{
	if (n < 1)
		n = 1;
	if (n > RELAY_PIPES_MAX)
		n = RELAY_PIPES_MAX;
	__atomic_store_n(&relay_pipes_max, n, __ATOMIC_RELAXED);
}

/* A direction with nothing in flight. */
void
relay_dir_init(struct relay_dir *d)
{
	memset(d, 0, sizeof *d);
	d->pipe[0] = d->pipe[1] = -1;
}

/* Bytes read from the source and not yet written to the sink. */
size_t
relay_dir_pending(const struct relay_dir *d)
{
	return (d->len + d->inpipe);
}

/*
 * How much may be read now, for at most limit bytes in flight. A pipe
 * that still holds bytes takes no more until it is emptied: its sink is
 * slow (or a splice into it found no room), and that is the backpressure.
 */
size_t
relay_dir_room(const struct relay_dir *d, size_t limit)
{
	if (d->inpipe != 0)
		return (0);
	return (limit > d->len ? limit - d->len : 0);
}

/*
 * Read at most max bytes from fd: spliced into a pipe when splice is
 * allowed, the direction moves bulk data and nothing waits in the buffer
 * (the order must hold), else copied into the buffer of capacity cap.
 * Small exchanges (requests, replies, interactive traffic) are cheaper to
 * copy than to splice, which takes two calls and a pipe for any size: a
 * big read turns splicing on, a small splice turns it off. Returns the
 * bytes read, 0 at EOF, or -1 with errno (EAGAIN: nothing to read now).
 */
ssize_t
relay_dir_read(struct relay_pool *p, struct relay_dir *d, int fd, size_t max,
    size_t cap, int splice_ok)
{
	ssize_t	 n;

	/* Bytes still in the pipe go first: nothing is read past them. */
	if (max == 0 || d->inpipe != 0) {
		errno = EAGAIN;
		return (-1);
	}
	if (splice_ok && d->bulk && !d->nosplice && d->len == 0 &&
	    (d->pipe[0] != -1 || relay_pipe_get(p, d) == 0)) {
		n = splice(fd, NULL, d->pipe[1], NULL, max, RELAY_SPLICE_FLAGS);
		if (n > 0) {
			d->inpipe += (size_t)n;
			if (n < RELAY_BULK_END)
				d->bulk = 0;
		}
		if (n >= 0 || (errno != EINVAL && errno != ENOSYS))
			return (n);
		/* This pair of sockets cannot splice: copy from now on. */
		d->nosplice = 1;
		relay_pipe_put(p, d);
	}
	if (d->buf == NULL && relay_buf_get(p, d, cap) == -1) {
		errno = ENOMEM;
		return (-1);
	}
	if (d->len == 0)
		d->off = 0;
	else if (d->off != 0 && d->bufcap - d->off - d->len < max) {
		memmove(d->buf, d->buf + d->off, d->len);
		d->off = 0;
	}
	if (max > d->bufcap - d->off - d->len)
		max = d->bufcap - d->off - d->len;
	do
		n = read(fd, d->buf + d->off + d->len, max);
	while (n == -1 && errno == EINTR);
	if (n > 0) {
		d->len += (size_t)n;
		if (n >= RELAY_BULK || (size_t)n >= cap - RELAY_SLACK)
			d->bulk = 1;
	}
	return (n);
}

/*
 * Write what is pending to fd. Returns the bytes written (0 if the socket
 * takes none now), or -1 with errno.
 */
ssize_t
relay_dir_write(struct relay_dir *d, int fd)
{
	ssize_t	 n;

	if (d->len != 0) {
		do
			n = send(fd, d->buf + d->off, d->len, MSG_NOSIGNAL);
		while (n == -1 && errno == EINTR);
		if (n > 0) {
			d->off += (size_t)n;
			d->len -= (size_t)n;
		}
	} else if (d->inpipe != 0) {
		n = splice(d->pipe[0], NULL, fd, NULL, d->inpipe,
		    RELAY_SPLICE_FLAGS);
		if (n > 0)
			d->inpipe -= (size_t)n;
	} else
		return (0);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return (0);
	return (n);
}

/*
 * Put n bytes in front of what is pending (a PROXY header before the
 * client's first bytes). The buffer's capacity leaves room for it.
 */
int
relay_dir_prepend(struct relay_pool *p, struct relay_dir *d, const void *data,
    size_t n, size_t cap)
{
	if (d->inpipe != 0)
		return (-1);	/* nothing is spliced before the connect */
	if (d->buf == NULL && relay_buf_get(p, d, cap) == -1)
		return (-1);
	if (d->off < n) {
		if (d->len + n > d->bufcap)
			return (-1);
		memmove(d->buf + n, d->buf + d->off, d->len);
		d->off = n;
	}
	d->off -= n;
	memcpy(d->buf + d->off, data, n);
	d->len += n;
	return (0);
}

/* Give the buffer and the pipe back to the pool once they are empty. */
void
relay_dir_idle(struct relay_pool *p, struct relay_dir *d)
{
	if (d->buf != NULL && d->len == 0)
		relay_buf_put(p, d);
	if (d->pipe[0] != -1 && d->inpipe == 0)
		relay_pipe_put(p, d);
}

/* The session closes: what is still in flight is dropped. */
void
relay_dir_free(struct relay_pool *p, struct relay_dir *d)
{
	if (d->buf != NULL) {
		d->len = 0;
		relay_buf_put(p, d);
	}
	if (d->pipe[0] != -1) {
		if (d->inpipe != 0) {
			/* A pipe with bytes in it is not reused. */
			relay_pipe_close(d->pipe);
			d->pipe[0] = d->pipe[1] = -1;
			d->inpipe = 0;
			p->taken--;
		} else
			relay_pipe_put(p, d);
	}
}

/*
 * A pipe for a direction: an idle one, or a new one while fewer than
 * the budget's number are open. -1 when none can be had (copy instead).
 */
static int
relay_pipe_get(struct relay_pool *p, struct relay_dir *d)
{
	if (p->nidle != 0) {
		p->nidle--;
		d->pipe[0] = p->idle[p->nidle][0];
		d->pipe[1] = p->idle[p->nidle][1];
	} else {
		if (p->taken >= (size_t)__atomic_load_n(&relay_pipes_max,
		    __ATOMIC_RELAXED))
			return (-1);
		if (pipe2(d->pipe, O_NONBLOCK|O_CLOEXEC) == -1) {
			d->pipe[0] = d->pipe[1] = -1;
			return (-1);
		}
		__atomic_add_fetch(&relay_pipe_fds, 2, __ATOMIC_RELAXED);
	}
	p->taken++;
	return (0);
}

/* An empty pipe goes back to the pool. */
static void
relay_pipe_put(struct relay_pool *p, struct relay_dir *d)
{
	if (d->pipe[0] == -1)
		return;
	p->taken--;
	if (p->nidle + p->taken < (size_t)__atomic_load_n(&relay_pipes_max,
	    __ATOMIC_RELAXED)) {
		p->idle[p->nidle][0] = d->pipe[0];
		p->idle[p->nidle][1] = d->pipe[1];
		p->nidle++;
	} else
		relay_pipe_close(d->pipe);
	d->pipe[0] = d->pipe[1] = -1;
}

static void
relay_pipe_close(int fds[2])
{
	close(fds[0]);
	close(fds[1]);
	__atomic_sub_fetch(&relay_pipe_fds, 2, __ATOMIC_RELAXED);
}

/* A buffer of capacity cap: a kept one of that size, or a new one. */
static int
relay_buf_get(struct relay_pool *p, struct relay_dir *d, size_t cap)
{
	size_t	 i;

	for (i = p->nbufs; i-- > 0; ) {
		if (p->bufs[i].cap != cap)
			continue;
		d->buf = p->bufs[i].buf;
		p->bufs_bytes -= cap;
		p->bufs[i] = p->bufs[--p->nbufs];
		break;
	}
	if (d->buf == NULL && (d->buf = malloc(cap)) == NULL)
		return (-1);
	d->bufcap = cap;
	d->off = d->len = 0;
	return (0);
}

/* An empty buffer is kept for the next direction that needs one. */
static void
relay_buf_put(struct relay_pool *p, struct relay_dir *d)
{
	if (p->nbufs < RELAY_BUFS_KEPT &&
	    p->bufs_bytes + d->bufcap <= RELAY_BUFS_KEPT_BYTES) {
		p->bufs[p->nbufs].buf = d->buf;
		p->bufs[p->nbufs].cap = d->bufcap;
		p->nbufs++;
		p->bufs_bytes += d->bufcap;
	} else
		free(d->buf);
	d->buf = NULL;
	d->bufcap = d->off = d->len = 0;
}
