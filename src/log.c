/*
 * Logging: levels, errno preserved, journal priority prefixes, and a writer
 * thread so that a slow stderr never blocks an event loop. Under the
 * journal, connection lines go to a structured sink instead (set by the
 * daemon: log.c itself never links libsystemd).
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acceptd.h"

/* sd-daemon.h priority prefixes, spelled out so no header is needed. */
#define LOG_PREFIX_ERR		"<3>"
#define LOG_PREFIX_WARNING	"<4>"
#define LOG_PREFIX_NOTICE	"<5>"
#define LOG_PREFIX_INFO		"<6>"
#define LOG_PREFIX_DEBUG	"<7>"

/* Lines waiting for the writer thread; beyond this they are dropped. */
#define LOG_QUEUE_LINES		8192
/* Lines the writer takes at once, and how long it lets them gather. */
#define LOG_BATCH_LINES		64
#define LOG_BATCH_GATHER_NS	1000000
/* Most fields of a structured connection entry, MESSAGE= included. */
#define LOG_JOURNAL_FIELDS	32

/*
 * A queued line: text for stderr, or (nfields > 0) a journal entry whose
 * fields follow one another in buf, each ending with a NUL.
 */
struct log_line {
	char		*buf;
	size_t		 len;
	size_t		 nfields;
};

static enum log_level	 log_level = LOG_LEVEL_INFO;
static const char	*log_name = "acceptd";
static int		 log_to_journal;

static pthread_mutex_t	 log_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 log_cond = PTHREAD_COND_INITIALIZER;
static pthread_t	 log_thread;
static int		 log_thread_running;
static int		 log_thread_stop;
static struct log_line	 log_queue[LOG_QUEUE_LINES];
static size_t		 log_head;	/* next line to write */
static size_t		 log_count;	/* lines queued */
static unsigned long long log_drops;
static int		(*log_sink)(const char *const *, size_t);

static const char	*log_level_names[] = {
	"error", "warning", "notice", "info", "debug"
};
static const char	*log_prefixes[] = {
	LOG_PREFIX_ERR, LOG_PREFIX_WARNING, LOG_PREFIX_NOTICE,
	LOG_PREFIX_INFO, LOG_PREFIX_DEBUG
};

static int	 log_stderr_is_journal(void);
static void	 log_write_all(const char *, size_t);
static void	 log_queue_line(struct log_line *, int);
static void	 log_emit(enum log_level, const char *, int);
static void	 log_journal_entry(const char *, const char *const *, size_t);
static void	 log_output(struct log_line *);
static void	 log_vlog(enum log_level, int, const char *, va_list)
		     printflike(3, 0);
static void	*log_writer(void *);
static size_t	 log_output_batch(struct log_line *, size_t, size_t);

/* Is stderr the journal's stream ($JOURNAL_STREAM is "dev:inode")? */
static int
log_stderr_is_journal(void)
{
	const char		*e;
	struct stat		 st;
	unsigned long long	 dev, ino;

	if ((e = getenv("JOURNAL_STREAM")) == NULL)
		return (0);
	if (sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return (0);
	if (fstat(STDERR_FILENO, &st) == -1)
		return (0);
	return ((unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino);
}

/* Set up logging: the level and the name used in plain lines. */
void
log_init(enum log_level level, const char *name)
{
	log_level = level;
	if (name != NULL)
		log_name = name;
	log_to_journal = log_stderr_is_journal();
}

/* Change the level (command line override, reload). */
void
log_setlevel(enum log_level level)
{
	__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

/* Return the current level. */
enum log_level
log_getlevel(void)
{
	return (__atomic_load_n(&log_level, __ATOMIC_RELAXED));
}

/* Would a message at this level be written? */
int
log_enabled(enum log_level level)
{
	return (level <= log_getlevel());
}

/* Is stderr the journal? */
int
log_journal(void)
{
	return (log_to_journal);
}

/*
 * Set where connection entries go when stderr is the journal: a function
 * taking "NAME=value" fields, MESSAGE= first, returning 0 once the
 * journal took them. It runs on the writer thread.
 */
void
log_set_journal_sink(int (*sink)(const char *const *, size_t))
{
	__atomic_store_n(&log_sink, sink, __ATOMIC_RELEASE);
}

/* How many lines were dropped because the sink was too slow. */
unsigned long long
log_dropped(void)
{
	unsigned long long	 n;

	pthread_mutex_lock(&log_mutex);
	n = log_drops;
	pthread_mutex_unlock(&log_mutex);
	return (n);
}

/* Write a whole buffer to stderr, retrying short writes. */
static void
log_write_all(const char *buf, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		n = write(STDERR_FILENO, buf, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Format one finished line and queue it, or write it when no writer runs. */
static void
log_emit(enum log_level level, const char *msg, int sync)
{
	/* The date and time change once a second: format them then. */
	static __thread char	 stamp[64];
	static __thread time_t	 stamp_sec = -1;
	struct log_line		 ll;
	char			*line;
	struct timespec		 ts;
	struct tm		 tm;
	int			 len;

	char			 head[160];
	size_t			 hlen, mlen;

	if (log_to_journal)
		len = snprintf(head, sizeof head, "%s", log_prefixes[level]);
	else {
		clock_gettime(CLOCK_REALTIME, &ts);
		if (ts.tv_sec != stamp_sec) {
			localtime_r(&ts.tv_sec, &tm);
			strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S",
			    &tm);
			stamp_sec = ts.tv_sec;
		}
		len = snprintf(head, sizeof head, "%s.%03ld %s: %s: ", stamp,
		    ts.tv_nsec / 1000000, log_name, log_level_names[level]);
	}
	if (len < 0 || (size_t)len >= sizeof head)
		return;
	/* The message is copied as it is, not through printf again. */
	hlen = (size_t)len;
	mlen = strlen(msg);
	if ((line = malloc(hlen + mlen + 2)) == NULL)
		return;
	memcpy(line, head, hlen);
	memcpy(line + hlen, msg, mlen);
	line[hlen + mlen] = '\n';
	line[hlen + mlen + 1] = '\0';
	len = (int)(hlen + mlen + 1);
	ll.buf = line;
	ll.len = (size_t)len;
	ll.nfields = 0;
	log_queue_line(&ll, sync);
}

/*
 * Hand a line to the writer thread (which then owns it), or write it
 * here when no writer runs; beyond LOG_QUEUE_LINES it is dropped.
 */
static void
log_queue_line(struct log_line *ll, int sync)
{
	pthread_mutex_lock(&log_mutex);
	if (!log_thread_running || sync) {
		pthread_mutex_unlock(&log_mutex);
		log_output(ll);
		return;
	}
	if (log_count == LOG_QUEUE_LINES) {
		log_drops++;
		pthread_mutex_unlock(&log_mutex);
		free(ll->buf);
		return;
	}
	log_queue[(log_head + log_count) % LOG_QUEUE_LINES] = *ll;
	log_count++;
	pthread_cond_signal(&log_cond);
	pthread_mutex_unlock(&log_mutex);
}

/*
 * Write out one line and free it. A journal entry goes to the sink; if
 * the journal does not take it, its message is written to stderr instead.
 */
static void
log_output(struct log_line *ll)
{
	int		(*sink)(const char *const *, size_t);
	const char	*fields[LOG_JOURNAL_FIELDS], *p, *msg;
	char		*line;
	size_t		 i;
	int		 len;

	if (ll->nfields == 0) {
		log_write_all(ll->buf, ll->len);
		free(ll->buf);
		return;
	}
	p = ll->buf;
	for (i = 0; i < ll->nfields; i++) {
		fields[i] = p;
		p += strlen(p) + 1;
	}
	sink = __atomic_load_n(&log_sink, __ATOMIC_ACQUIRE);
	if (sink == NULL || sink(fields, ll->nfields) != 0) {
		msg = fields[0] + strlen("MESSAGE=");
		len = asprintf(&line, "%s%s\n", LOG_PREFIX_INFO, msg);
		if (len != -1) {
			log_write_all(line, (size_t)len);
			free(line);
		}
	}
	free(ll->buf);
}

/* Format a message, with strerror of the saved errno when asked. */
static void
log_vlog(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	char	*msg, *full;
	int	 saved_errno = errno;

	if (!log_enabled(level)) {
		errno = saved_errno;
		return;
	}
	if (vasprintf(&msg, fmt, ap) == -1) {
		errno = saved_errno;
		return;
	}
	if (with_errno) {
		if (asprintf(&full, "%s: %s", msg, strerror(saved_errno)) ==
		    -1) {
			free(msg);
			errno = saved_errno;
			return;
		}
		free(msg);
		msg = full;
	}
	log_emit(level, msg, 0);
	free(msg);
	errno = saved_errno;
}

/*
 * Drain the queue to stderr and the sink; the only place that may block.
 * Woken from sleep, it first lets lines gather for a moment, so that a
 * busy daemon wakes it about once a millisecond, not once a line, and
 * lines go out many to a write.
 */
static void *
log_writer(void *arg)
{
	struct log_line		 batch[LOG_BATCH_LINES];
	struct timespec		 gather = { 0, LOG_BATCH_GATHER_NS };
	size_t			 i, n;

	pthread_mutex_lock(&log_mutex);
	for (;;) {
		if (log_count == 0 && !log_thread_stop) {
			while (log_count == 0 && !log_thread_stop)
				pthread_cond_wait(&log_cond, &log_mutex);
			if (!log_thread_stop) {
				pthread_mutex_unlock(&log_mutex);
				nanosleep(&gather, NULL);
				pthread_mutex_lock(&log_mutex);
			}
		}
		if (log_count == 0)
			break;
		for (n = 0; n < LOG_BATCH_LINES && log_count > 0; n++) {
			batch[n] = log_queue[log_head];
			log_head = (log_head + 1) % LOG_QUEUE_LINES;
			log_count--;
		}
		pthread_mutex_unlock(&log_mutex);
		for (i = 0; i < n; i = log_output_batch(batch, i, n))
			/* nothing */;
		pthread_mutex_lock(&log_mutex);
	}
	pthread_mutex_unlock(&log_mutex);
	return (NULL);
}

/*
 * Write out batch[i] and the plain lines that follow it with one writev
 * (a journal entry goes alone to log_output); returns the next index.
 */
static size_t
log_output_batch(struct log_line *batch, size_t i, size_t n)
{
	struct iovec	 iov[LOG_BATCH_LINES];
	size_t		 j, k, done;
	ssize_t		 w;

	if (batch[i].nfields != 0) {
		log_output(&batch[i]);
		return (i + 1);
	}
	for (j = i; j < n && batch[j].nfields == 0; j++) {
		iov[j - i].iov_base = batch[j].buf;
		iov[j - i].iov_len = batch[j].len;
	}
	do
		w = writev(STDERR_FILENO, iov, (int)(j - i));
	while (w == -1 && errno == EINTR);
	done = w == -1 ? 0 : (size_t)w;
	for (k = i; k < j; k++) {
		/* What a short writev left is written line by line. */
		if (done >= batch[k].len)
			done -= batch[k].len;
		else {
			if (w != -1)
				log_write_all(batch[k].buf + done,
				    batch[k].len - done);
			done = 0;
		}
		free(batch[k].buf);
	}
	return (j);
}

/* Start the writer thread; from now on logging never blocks the caller. */
void
log_start_writer(void)
{
	sigset_t	 all, old;

	pthread_mutex_lock(&log_mutex);
	if (log_thread_running) {
		pthread_mutex_unlock(&log_mutex);
		return;
	}
	log_thread_stop = 0;
	/* Signals belong to the event loop, never to this thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&log_thread, NULL, log_writer, NULL) == 0)
		log_thread_running = 1;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_mutex_unlock(&log_mutex);
}

/* Write out what is queued and stop the writer thread. */
void
log_stop_writer(void)
{
	pthread_mutex_lock(&log_mutex);
	if (!log_thread_running) {
		pthread_mutex_unlock(&log_mutex);
		return;
	}
	log_thread_stop = 1;
	pthread_cond_signal(&log_cond);
	pthread_mutex_unlock(&log_mutex);
	pthread_join(log_thread, NULL);
	pthread_mutex_lock(&log_mutex);
	log_thread_running = 0;
	pthread_mutex_unlock(&log_mutex);
}

/* Log an error without errno. */
void
log_errorx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
}

/* Log a warning with strerror(errno). */
void
log_warn(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_WARNING, 1, fmt, ap);
	va_end(ap);
}

/* Log a warning. */
void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_WARNING, 0, fmt, ap);
	va_end(ap);
}

/* Log a notice: normal but significant (startup, reload, stop). */
void
log_notice(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_NOTICE, 0, fmt, ap);
	va_end(ap);
}

/* Log an informational message. */
void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_INFO, 0, fmt, ap);
	va_end(ap);
}

/* Log a debug message. */
void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_DEBUG, 0, fmt, ap);
	va_end(ap);
}

/*
 * Queue a journal entry: MESSAGE= the line, PRIORITY= info, the program's
 * SYSLOG_IDENTIFIER=, then the caller's fields, packed into one buffer.
 */
static void
log_journal_entry(const char *line, const char *const *fields,
    size_t nfields)
{
	struct log_line	 ll;
	char		 ident[128], *p;
	const char	*head[2];
	size_t		 i, len;

	snprintf(ident, sizeof ident, "SYSLOG_IDENTIFIER=%s", log_name);
	head[0] = "PRIORITY=6";	/* LOG_INFO, as the <6> prefix */
	head[1] = ident;
	if (nfields > LOG_JOURNAL_FIELDS - 1 - nitems(head))
		nfields = LOG_JOURNAL_FIELDS - 1 - nitems(head);
	len = strlen("MESSAGE=") + strlen(line) + 1;
	for (i = 0; i < nitems(head); i++)
		len += strlen(head[i]) + 1;
	for (i = 0; i < nfields; i++)
		len += strlen(fields[i]) + 1;
	if ((ll.buf = malloc(len)) == NULL)
		return;
	p = ll.buf;
	p += sprintf(p, "MESSAGE=%s", line) + 1;
	for (i = 0; i < nitems(head); i++)
		p += sprintf(p, "%s", head[i]) + 1;
	for (i = 0; i < nfields; i++)
		p += sprintf(p, "%s", fields[i]) + 1;
	ll.len = len;
	ll.nfields = 1 + nitems(head) + nfields;
	log_queue_line(&ll, 0);
}

/*
 * Log one connection line. Connection lines are governed by
 * log_connections alone, so they are written whatever log_level says.
 * Under the journal they become structured entries: MESSAGE= the line,
 * plus the given "ACCEPTD_*=value" fields.
 */
void
log_conn(const char *line, const char *const *fields, size_t nfields)
{
	int	 saved_errno = errno;

	if (log_to_journal &&
	    __atomic_load_n(&log_sink, __ATOMIC_ACQUIRE) != NULL)
		log_journal_entry(line, fields, nfields);
	else
		log_emit(LOG_LEVEL_INFO, line, 0);
	errno = saved_errno;
}

/* Log at error level with strerror(errno), then exit 1. */
void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	log_stop_writer();
	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_ERROR, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Log at error level, then exit 1. */
void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	log_stop_writer();
	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
