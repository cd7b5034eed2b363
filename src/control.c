/*
 * The control socket: a unix stream socket on the main loop that answers
 * one request per connection (acceptctl(8) speaks it).
 *
 * The request is one line, at most CONTROL_MAX_REQUEST bytes; the answer
 * is "OK" or "ERROR message" on a line of its own, then the output, then
 * the connection closes. The socket file is mode 0600 and every peer is
 * checked with SO_PEERCRED: root, or acceptd's own user (the owner of the
 * file). A client gets CONTROL_TIMEOUT_SEC to send its request and to
 * read the answer, at most CONTROL_MAX_CLIENTS are served at once (more
 * wait in the kernel's backlog), and everything goes through buffers: a
 * slow or hostile client holds only its own connection.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "acceptd.h"

#define CONTROL_MAX_CLIENTS	8
#define CONTROL_MAX_REQUEST	1024
#define CONTROL_TIMEOUT_SEC	10
#define CONTROL_BACKLOG		16
#define CONTROL_MAX_WORDS	4

/* One connected client. */
struct control_client {
	TAILQ_ENTRY(control_client) entry;
	struct control		*c;
	struct bufferevent	*bev;
	uid_t			 uid;
	pid_t			 pid;
	int			 answered;	/* close once written */
	int			 reload_wait;	/* waits for a reload */
	unsigned long long	 reload_seq;	/* answered by this one */
};
TAILQ_HEAD(control_client_list, control_client);

struct control {
	struct event_base	*base;
	char			*path;
	dev_t			 dev;		/* of our socket file */
	ino_t			 ino;
	struct evconnlistener	*evl;
	struct event		*backoff;	/* accept error back-off */
	struct control_client_list clients;
	size_t			 nclients;
	int			 capped;	/* at CONTROL_MAX_CLIENTS */
	int			 paused;	/* in back-off */
	const struct stats_source *src;

	/* The last reload that ended, for requests it already answers. */
	unsigned long long	 done_seq;
	struct causes		 done_errs;

	/* Refusals are logged once a second at most. */
	long long		 refused_sec;
	unsigned long long	 refused_more;
};

/* A command: its words after the name, and what runs it. */
struct control_command {
	const char		*name;
	const char		*sub;		/* second word, or NULL */
	int			 nargs;		/* words after those */
	const char		*usage;
	void			(*run)(struct control_client *, char **);
};

static int	 control_prepare_path(const char *, char **);
static void	 control_accept(struct evconnlistener *, evutil_socket_t,
		     struct sockaddr *, int, void *);
static void	 control_accept_error(struct evconnlistener *, void *);
static void	 control_backoff_end(evutil_socket_t, short, void *);
static void	 control_accepting(struct control *);
static void	 control_refuse(struct control *, int, uid_t, pid_t);
static void	 control_discard(int);
static void	 control_client_free(struct control_client *);
static void	 control_read(struct bufferevent *, void *);
static void	 control_write(struct bufferevent *, void *);
static void	 control_event(struct bufferevent *, short, void *);
static void	 control_request(struct control_client *, char *);
static void	 control_answer(struct control_client *, struct evbuffer *,
		     const char *, ...) printflike(3, 4);
static void	 control_json_string(struct evbuffer *, const char *);
static void	 control_stats(struct control_client *, char **);
static void	 control_show_conns(struct control_client *, char **);
static void	 control_show_conn(const struct session_info *, void *);
static void	 control_show_backends(struct control_client *, char **);
static void	 control_disable(struct control_client *, char **);
static void	 control_enable(struct control_client *, char **);
static void	 control_admin(struct control_client *, const char *, int);
static void	 control_kill(struct control_client *, char **);
static void	 control_reload(struct control_client *, char **);
static void	 control_reload_answer(struct control_client *);
static void	 control_help(struct control_client *, char **);

static const struct control_command control_commands[] = {
	{ "stats", NULL, 0, "stats", control_stats },
	{ "show", "conns", 0, "show conns", control_show_conns },
	{ "show", "backends", 0, "show backends", control_show_backends },
	{ "disable", NULL, 1, "disable LISTENER/ADDRESS", control_disable },
	{ "enable", NULL, 1, "enable LISTENER/ADDRESS", control_enable },
	{ "kill", NULL, 1, "kill ID", control_kill },
	{ "reload", NULL, 0, "reload", control_reload },
	{ "help", NULL, 0, "help", control_help }
};

/*
 * Listen on the control socket at path: mode 0600, owned by uid and gid
 * (when not -1: the user acceptd runs as). Returns NULL with *cause set.
 */
struct control *
control_start(struct event_base *base, const char *path, uid_t uid,
    gid_t gid, const struct stats_source *src, char **cause)
{
	struct control		*c;
	struct sockaddr_un	 sun;
	struct stat		 st;
	int			 fd = -1, saved_errno;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		xasprintf(cause, "control socket %s: path too long", path);
		return (NULL);
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (control_prepare_path(path, cause) == -1)
		return (NULL);
	fd = socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		goto fail;
	/* Nobody can connect before listen(): set the mode first. */
	if (chmod(path, 0600) == -1 ||
	    ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    chown(path, uid, gid) == -1) ||
	    stat(path, &st) == -1 ||
	    listen(fd, CONTROL_BACKLOG) == -1) {
		saved_errno = errno;
		unlink(path);
		errno = saved_errno;
		goto fail;
	}

	c = xcalloc(1, sizeof *c);
	c->base = base;
	c->path = xstrdup(path);
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->src = src;
	TAILQ_INIT(&c->clients);
	c->evl = evconnlistener_new(base, control_accept, c,
	    LEV_OPT_CLOSE_ON_FREE|LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (c->evl == NULL) {
		close(fd);
		unlink(path);
		xasprintf(cause, "control socket %s: cannot listen", path);
		control_free(c);
		return (NULL);
	}
	evconnlistener_set_error_cb(c->evl, control_accept_error);
	if ((c->backoff = evtimer_new(base, control_backoff_end, c)) == NULL) {
		xasprintf(cause, "control socket %s: cannot create a timer",
		    path);
		control_free(c);
		return (NULL);
	}
	log_info("control socket: listening on %s", path);
	return (c);

 fail:
	saved_errno = errno;
	if (fd != -1)
		close(fd);
	xasprintf(cause, "control socket %s: %s", path,
	    strerror(saved_errno));
	return (NULL);
}

/*
 * Make way for the socket: create its directory if it is missing (one
 * level), and remove a socket file that nothing listens on any more. A
 * file that is not a socket, or a socket in use, is an error.
 */
static int
control_prepare_path(const char *path, char **cause)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	char			*copy, *dir;
	int			 fd, r, saved_errno;

	copy = xstrdup(path);
	dir = dirname(copy);
	if (stat(dir, &st) == -1 && errno == ENOENT &&
	    mkdir(dir, 0755) == -1 && errno != EEXIST) {
		xasprintf(cause, "control socket %s: cannot create %s: %s",
		    path, dir, strerror(errno));
		free(copy);
		return (-1);
	}
	free(copy);

	if (lstat(path, &st) == -1)
		return (0);
	if (!S_ISSOCK(st.st_mode)) {
		xasprintf(cause, "control socket %s: the file exists and is "
		    "not a socket", path);
		return (-1);
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);	/* checked */
	if ((fd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0)) == -1) {
		xasprintf(cause, "control socket %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	r = connect(fd, (struct sockaddr *)&sun, sizeof sun);
	saved_errno = errno;
	close(fd);
	if (r == 0 || saved_errno == EAGAIN) {
		xasprintf(cause, "control socket %s: another process listens "
		    "on it", path);
		return (-1);
	}
	if (saved_errno == ECONNREFUSED && unlink(path) == -1 &&
	    errno != ENOENT) {
		xasprintf(cause, "control socket %s: cannot remove the stale "
		    "socket: %s", path, strerror(errno));
		return (-1);
	}
	return (0);
}

/*
 * Close the socket and every client (one waiting for a reload is told
 * that it will not come), and remove the socket file if it is still ours.
 */
void
control_free(struct control *c)
{
	static const char	 gone[] = "ERROR acceptd stopped before the "
	    "reload ended\n";
	struct control_client	*cl;

	if (c == NULL)
		return;
	while ((cl = TAILQ_FIRST(&c->clients)) != NULL) {
		if (cl->reload_wait && !cl->answered)
			send(bufferevent_getfd(cl->bev), gone, sizeof gone - 1,
			    MSG_DONTWAIT|MSG_NOSIGNAL);
		control_client_free(cl);
	}
	control_retire(c);
	if (c->backoff != NULL)
		event_free(c->backoff);
	causes_free(&c->done_errs);
	free(c->path);
	free(c);
}

/* The path it listens on. */
const char *
control_path(const struct control *c)
{
	return (c->path);
}

/*
 * Stop listening (a reload moved the socket elsewhere) and remove the
 * socket file; the clients connected already are still answered.
 */
void
control_retire(struct control *c)
{
	struct stat	 st;

	if (c->evl == NULL)
		return;
	evconnlistener_free(c->evl);
	c->evl = NULL;
	if (stat(c->path, &st) == 0 && st.st_dev == c->dev &&
	    st.st_ino == c->ino && unlink(c->path) == -1)
		log_debug("%s: unlink %s: %s", __func__, c->path,
		    strerror(errno));
}

/*
 * A reload ended (seq counts the reloads begun), successfully if errs is
 * empty: answer the clients that waited for it.
 */
void
control_reload_done(struct control *c, unsigned long long seq,
    const struct causes *errs)
{
	struct control_client	*cl, *next;
	size_t			 i;

	if (c == NULL)
		return;
	causes_free(&c->done_errs);
	for (i = 0; i < errs->n; i++)
		causes_add(&c->done_errs, "%s", errs->v[i]);
	c->done_seq = seq;
	for (cl = TAILQ_FIRST(&c->clients); cl != NULL; cl = next) {
		next = TAILQ_NEXT(cl, entry);
		if (cl->reload_wait && !cl->answered && cl->reload_seq <= seq)
			control_reload_answer(cl);
	}
}

/* A client connected: check who it is, then read its request. */
static void
control_accept(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct control		*c = arg;
	struct control_client	*cl;
	struct ucred		 cred;
	struct timeval		 tv = { CONTROL_TIMEOUT_SEC, 0 };
	socklen_t		 len = sizeof cred;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("control socket: SO_PEERCRED");
		close(fd);
		return;
	}
	if (cred.uid != 0 && cred.uid != geteuid()) {
		control_refuse(c, fd, cred.uid, cred.pid);
		return;
	}
	if ((cl = calloc(1, sizeof *cl)) == NULL) {
		close(fd);
		return;
	}
	cl->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (cl->bev == NULL) {
		close(fd);
		free(cl);
		return;
	}
	cl->c = c;
	cl->uid = cred.uid;
	cl->pid = cred.pid;
	TAILQ_INSERT_TAIL(&c->clients, cl, entry);
	c->nclients++;
	bufferevent_setcb(cl->bev, control_read, control_write, control_event,
	    cl);
	/* Past this, libevent stops reading: the request is too long. */
	bufferevent_setwatermark(cl->bev, EV_READ, 0, CONTROL_MAX_REQUEST + 1);
	bufferevent_set_timeouts(cl->bev, &tv, &tv);
	if (bufferevent_enable(cl->bev, EV_READ) == -1) {
		control_client_free(cl);
		return;
	}
	control_accepting(c);
}

/* Tell a refused peer why (if it reads), close it, and log it. */
static void
control_refuse(struct control *c, int fd, uid_t uid, pid_t pid)
{
	static const char	 msg[] = "ERROR permission denied: only root "
	    "and the user acceptd runs as may use the control socket\n";
	struct timespec		 ts;

	control_discard(fd);
	send(fd, msg, sizeof msg - 1, MSG_DONTWAIT|MSG_NOSIGNAL);
	close(fd);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ts.tv_sec == c->refused_sec) {
		c->refused_more++;
		return;
	}
	if (c->refused_more > 0)
		log_warnx("control socket %s: %llu more clients refused",
		    c->path, c->refused_more);
	log_warnx("control socket %s: refused a client running as uid %u "
	    "(pid %d): only root and uid %u may use it", c->path,
	    (unsigned int)uid, (int)pid, (unsigned int)geteuid());
	c->refused_sec = ts.tv_sec;
	c->refused_more = 0;
}

/* An accept error (EMFILE, ...): stop accepting for a second. */
static void
control_accept_error(struct evconnlistener *evl, void *arg)
{
	struct control	*c = arg;
	struct timeval	 tv = { 1, 0 };
	int		 err = EVUTIL_SOCKET_ERROR();

	log_warnx("control socket %s: accept failed: %s; pausing for 1s",
	    c->path, evutil_socket_error_to_string(err));
	evconnlistener_disable(c->evl);
	c->paused = 1;
	evtimer_add(c->backoff, &tv);
}

/* The back-off is over: accept again. */
static void
control_backoff_end(evutil_socket_t fd, short events, void *arg)
{
	struct control	*c = arg;

	c->paused = 0;
	control_accepting(c);
}

/* Accept while below CONTROL_MAX_CLIENTS and not in a back-off. */
static void
control_accepting(struct control *c)
{
	if (c->evl == NULL)
		return;		/* retired */
	c->capped = c->nclients >= CONTROL_MAX_CLIENTS;
	if (c->capped || c->paused)
		evconnlistener_disable(c->evl);
	else
		evconnlistener_enable(c->evl);
}

/*
 * Read and drop what a client sent and nobody will read (a closed unix
 * socket with unread bytes makes the peer's read fail with ECONNRESET
 * instead of reaching the end of the answer). Bounded: a client that
 * keeps sending gets its reset.
 */
static void
control_discard(int fd)
{
	char	 buf[4096];
	int	 i;

	for (i = 0; i < 16; i++) {
		if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0)
			break;
	}
}

/* Close a client. */
static void
control_client_free(struct control_client *cl)
{
	struct control	*c = cl->c;

	TAILQ_REMOVE(&c->clients, cl, entry);
	c->nclients--;
	control_discard(bufferevent_getfd(cl->bev));
	bufferevent_free(cl->bev);
	free(cl);
	if (c->capped)
		control_accepting(c);
}

/* Request bytes: wait for a whole line, then run it. */
static void
control_read(struct bufferevent *bev, void *arg)
{
	struct control_client	*cl = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 n;

	if (cl->answered || cl->reload_wait)
		return;
	line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_MAX_REQUEST) {
			control_answer(cl, NULL, "request longer than %d "
			    "bytes", CONTROL_MAX_REQUEST);
		}
		return;
	}
	if (n > CONTROL_MAX_REQUEST) {
		free(line);
		control_answer(cl, NULL, "request longer than %d bytes",
		    CONTROL_MAX_REQUEST);
		return;
	}
	bufferevent_disable(bev, EV_READ);
	control_request(cl, line);
	free(line);
}

/* The answer is written: close. */
static void
control_write(struct bufferevent *bev, void *arg)
{
	struct control_client	*cl = arg;

	if (cl->answered &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		control_client_free(cl);
}

/*
 * EOF, error or timeout. A request may end at EOF without a newline
 * (echo -n stats | socat); otherwise the client is closed.
 */
static void
control_event(struct bufferevent *bev, short what, void *arg)
{
	struct control_client	*cl = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	char			*line;
	size_t			 n;

	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) &&
	    !cl->answered && !cl->reload_wait &&
	    (n = evbuffer_get_length(in)) > 0 && n <= CONTROL_MAX_REQUEST) {
		if ((line = calloc(1, n + 1)) == NULL) {
			control_client_free(cl);
			return;
		}
		evbuffer_remove(in, line, n);
		control_request(cl, line);
		free(line);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && !cl->answered)
		log_info("control socket: closing a client (uid %u) that sent "
		    "no request in %ds", (unsigned int)cl->uid,
		    CONTROL_TIMEOUT_SEC);
	control_client_free(cl);
}

/* Split a request into words and run its command. */
static void
control_request(struct control_client *cl, char *line)
{
	const struct control_command	*cmd = NULL;
	char				*words[CONTROL_MAX_WORDS + 1];
	char				*p, *last;
	size_t				 i;
	int				 n = 0, nargs;

	for (p = strtok_r(line, " \t\r\n", &last); p != NULL;
	    p = strtok_r(NULL, " \t\r\n", &last)) {
		if (n == CONTROL_MAX_WORDS) {
			control_answer(cl, NULL, "too many words: see 'help'");
			return;
		}
		words[n++] = p;
	}
	words[n] = NULL;
	if (n == 0) {
		control_answer(cl, NULL, "empty request: see 'help'");
		return;
	}
	for (i = 0; i < nitems(control_commands); i++) {
		if (strcmp(control_commands[i].name, words[0]) != 0)
			continue;
		if (control_commands[i].sub == NULL ||
		    (n > 1 && strcmp(control_commands[i].sub, words[1]) == 0)) {
			cmd = &control_commands[i];
			break;
		}
	}
	if (cmd == NULL) {
		if (strcmp(words[0], "show") == 0)
			control_answer(cl, NULL, "unknown command 'show%s%s': "
			    "expected 'show conns' or 'show backends'",
			    n > 1 ? " " : "", n > 1 ? words[1] : "");
		else
			control_answer(cl, NULL, "unknown command '%s': "
			    "expected stats, show conns, show backends, "
			    "disable, enable, kill, reload or help", words[0]);
		return;
	}
	nargs = n - (cmd->sub != NULL ? 2 : 1);
	if (nargs != cmd->nargs) {
		control_answer(cl, NULL, "usage: %s", cmd->usage);
		return;
	}
	cmd->run(cl, words + (cmd->sub != NULL ? 2 : 1));
}

/*
 * Answer and close: out (may be NULL) after "OK", or the message after
 * "ERROR" when fmt is not NULL. out is emptied.
 */
static void
control_answer(struct control_client *cl, struct evbuffer *out,
    const char *fmt, ...)
{
	struct evbuffer	*b = bufferevent_get_output(cl->bev);
	va_list		 ap;

	if (fmt == NULL)
		evbuffer_add(b, "OK\n", 3);
	else {
		evbuffer_add(b, "ERROR ", 6);
		va_start(ap, fmt);
		evbuffer_add_vprintf(b, fmt, ap);
		va_end(ap);
		evbuffer_add(b, "\n", 1);
	}
	if (out != NULL)
		evbuffer_add_buffer(b, out);
	cl->answered = 1;
	bufferevent_disable(cl->bev, EV_READ);
	bufferevent_enable(cl->bev, EV_WRITE);
}

/* A JSON string. */
static void
control_json_string(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			evbuffer_add_printf(b, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			evbuffer_add_printf(b, "\\u%04x", (unsigned char)*s);
		else
			evbuffer_add(b, s, 1);
	}
	evbuffer_add(b, "\"", 1);
}

/* stats: every counter, as one JSON object. */
static void
control_stats(struct control_client *cl, char **args)
{
	struct stats_snapshot		*snap;
	struct stats_listener_snap	*ls;
	struct stats_backend_snap	*bs;
	struct evbuffer			*b;
	size_t				 i, j;

	if ((b = evbuffer_new()) == NULL ||
	    (snap = stats_snapshot(cl->c->src)) == NULL) {
		if (b != NULL)
			evbuffer_free(b);
		control_answer(cl, NULL, "out of memory");
		return;
	}
	evbuffer_add_printf(b, "{\"version\":\"%s\",\"pid\":%d,"
	    "\"start_time\":%lld.%03lld,\"uptime\":%lld.%03lld,"
	    "\"connections\":{\"active\":%lld,\"max\":%lld},"
	    "\"reloads\":{\"ok\":%llu,\"failed\":%llu},"
	    "\"log_dropped\":%llu,\"listeners\":[", PACKAGE_VERSION,
	    (int)getpid(), snap->start_ms / 1000, snap->start_ms % 1000,
	    (snap->now_ms - snap->start_ms) / 1000,
	    (snap->now_ms - snap->start_ms) % 1000, snap->active, snap->cap,
	    snap->reloads_ok, snap->reloads_failed, snap->log_dropped);
	for (i = 0; i < snap->nlisteners; i++) {
		ls = &snap->listeners[i];
		evbuffer_add_printf(b, "%s{\"name\":", i == 0 ? "" : ",");
		control_json_string(b, ls->name);
		evbuffer_add_printf(b, ",\"configured\":%s,\"sockets\":%zu,"
		    "\"capped_sockets\":%zu,\"backoff_sockets\":%zu,"
		    "\"active\":%lld,\"bytes_in\":%llu,\"bytes_out\":%llu,"
		    "\"connects\":%llu,\"connect_seconds\":%llu.%06llu,"
		    "\"cap_pauses\":%llu,\"accept_backoffs\":%llu,\"ends\":{",
		    ls->configured ? "true" : "false", ls->sockets, ls->capped,
		    ls->paused, ls->active, ls->bytes_in, ls->bytes_out,
		    ls->connect_count, ls->connect_sum_us / 1000000,
		    ls->connect_sum_us % 1000000, ls->cap_pauses, ls->backoffs);
		for (j = 0; j < END_MAX; j++)
			evbuffer_add_printf(b, "%s\"%s\":%llu", j == 0 ? "" :
			    ",", session_end_name((enum end_reason)j),
			    ls->ends[j]);
		evbuffer_add(b, "}}", 2);
	}
	evbuffer_add(b, "],\"backends\":[", 14);
	for (i = 0; i < snap->nbackends; i++) {
		bs = &snap->backends[i];
		evbuffer_add_printf(b, "%s{\"listener\":", i == 0 ? "" : ",");
		control_json_string(b, bs->listener);
		evbuffer_add(b, ",\"address\":", 11);
		control_json_string(b, bs->address);
		evbuffer_add_printf(b, ",\"up\":%s,\"disabled\":%s,"
		    "\"backup\":%s,\"active\":%llu,\"total\":%llu,"
		    "\"failures\":%llu}", bs->up ? "true" : "false",
		    bs->admin_down ? "true" : "false",
		    bs->backup ? "true" : "false", bs->active, bs->total,
		    bs->failures);
	}
	evbuffer_add(b, "],\"workers\":[", 13);
	for (i = 0; i < snap->nworkers; i++) {
		evbuffer_add_printf(b, "%s{\"active\":%llu,\"accepted\":%llu}",
		    i == 0 ? "" : ",", snap->workers[i].active,
		    snap->workers[i].accepted);
	}
	evbuffer_add(b, "]}\n", 3);
	stats_snapshot_free(snap);
	control_answer(cl, b, NULL);
	evbuffer_free(b);
}

/* show conns: one line per open connection. */
static void
control_show_conns(struct control_client *cl, char **args)
{
	struct evbuffer	*b;

	if ((b = evbuffer_new()) == NULL) {
		control_answer(cl, NULL, "out of memory");
		return;
	}
	evbuffer_add_printf(b, "%-8s %-16s %-24s %-24s %-10s %10s %12s %12s\n",
	    "ID", "LISTENER", "CLIENT", "BACKEND", "STATE", "AGE", "BYTES_IN",
	    "BYTES_OUT");
	stats_conns(cl->c->src, control_show_conn, b);
	control_answer(cl, b, NULL);
	evbuffer_free(b);
}

/* One line of show conns. */
static void
control_show_conn(const struct session_info *si, void *arg)
{
	struct evbuffer	*b = arg;

	evbuffer_add_printf(b, "%-8llu %-16s %-24s %-24s %-10s %6lld.%03lld "
	    "%12llu %12llu\n", si->id, si->listener, si->client, si->backend,
	    si->state, si->age_ms / 1000, si->age_ms % 1000, si->bytes_in,
	    si->bytes_out);
}

/* show backends: one line per backend of the running configuration. */
static void
control_show_backends(struct control_client *cl, char **args)
{
	struct stats_snapshot		*snap;
	struct stats_backend_snap	*bs;
	struct evbuffer			*b;
	const char			*state;
	char				 name[512], check[64];
	long long			 ago;
	size_t				 i;

	if ((b = evbuffer_new()) == NULL ||
	    (snap = stats_snapshot(cl->c->src)) == NULL) {
		if (b != NULL)
			evbuffer_free(b);
		control_answer(cl, NULL, "out of memory");
		return;
	}
	evbuffer_add_printf(b, "%-32s %-8s %-7s %8s %10s %9s %s\n", "BACKEND",
	    "STATE", "ROLE", "ACTIVE", "TOTAL", "FAILURES", "LAST_CHECK");
	for (i = 0; i < snap->nbackends; i++) {
		bs = &snap->backends[i];
		snprintf(name, sizeof name, "%s/%s", bs->listener,
		    bs->address);
		if (bs->admin_down)
			state = "disabled";
		else
			state = bs->up ? "up" : "down";
		if (!bs->checked)
			snprintf(check, sizeof check, "-");
		else if (bs->last_check_ms == 0)
			snprintf(check, sizeof check, "none yet");
		else {
			ago = snap->now_ms - bs->last_check_ms;
			if (ago < 0)
				ago = 0;
			snprintf(check, sizeof check, "%s %lld.%03llds ago",
			    bs->last_check_ok ? "passed" : "failed",
			    ago / 1000, ago % 1000);
		}
		evbuffer_add_printf(b, "%-32s %-8s %-7s %8llu %10llu %9llu "
		    "%s\n", name, state, bs->backup ? "backup" : "primary",
		    bs->active, bs->total, bs->failures, check);
	}
	stats_snapshot_free(snap);
	control_answer(cl, b, NULL);
	evbuffer_free(b);
}

/* disable LISTENER/ADDRESS: no new connections; open ones go on. */
static void
control_disable(struct control_client *cl, char **args)
{
	control_admin(cl, args[0], 1);
}

/* enable LISTENER/ADDRESS: take new connections again. */
static void
control_enable(struct control_client *cl, char **args)
{
	control_admin(cl, args[0], 0);
}

/* disable or enable a backend named LISTENER/ADDRESS. */
static void
control_admin(struct control_client *cl, const char *arg, int down)
{
	struct evbuffer	*b;
	char		*listener, *address;
	size_t		 n;
	int		 found;

	listener = xstrdup(arg);
	if ((address = strchr(listener, '/')) == NULL || address == listener ||
	    address[1] == '\0') {
		control_answer(cl, NULL, "expected LISTENER/ADDRESS (as 'show "
		    "backends' prints it), got '%s'", arg);
		free(listener);
		return;
	}
	*address++ = '\0';
	n = stats_backend_admin(cl->c->src, listener, address, down, &found);
	if (!found)
		control_answer(cl, NULL, "no listener named '%s'", listener);
	else if (n == 0)
		control_answer(cl, NULL, "listener '%s' has no backend %s",
		    listener, address);
	else {
		log_notice("listener '%s': backend %s %s from the control "
		    "socket (uid %u)%s", listener, address, down ? "disabled" :
		    "enabled", (unsigned int)cl->uid, down ? ": no new "
		    "connections, open ones go on" : "");
		if ((b = evbuffer_new()) != NULL)
			evbuffer_add_printf(b, "backend %s/%s %s%s\n",
			    listener, address, down ? "disabled" : "enabled",
			    down ? ": no new connections, open ones go on" :
			    "");
		control_answer(cl, b, NULL);
		if (b != NULL)
			evbuffer_free(b);
	}
	free(listener);
}

/* kill ID: close that connection (end=killed). */
static void
control_kill(struct control_client *cl, char **args)
{
	struct evbuffer		*b;
	unsigned long long	 id;
	char			*end;

	errno = 0;
	id = strtoull(args[0], &end, 10);
	if (args[0][0] < '0' || args[0][0] > '9' || *end != '\0' ||
	    errno != 0 || id == 0) {
		control_answer(cl, NULL, "expected a connection id (as 'show "
		    "conns' prints it), got '%s'", args[0]);
		return;
	}
	if (stats_kill(cl->c->src, id) == -1) {
		control_answer(cl, NULL, "no open connection with id %llu", id);
		return;
	}
	log_notice("connection %llu killed from the control socket (uid %u)",
	    id, (unsigned int)cl->uid);
	if ((b = evbuffer_new()) != NULL)
		evbuffer_add_printf(b, "connection %llu closed\n", id);
	control_answer(cl, b, NULL);
	if (b != NULL)
		evbuffer_free(b);
}

/* reload: as SIGHUP does; the answer waits for the result. */
static void
control_reload(struct control_client *cl, char **args)
{
	struct control		*c = cl->c;
	unsigned long long	 seq;

	log_notice("reload requested from the control socket (uid %u)",
	    (unsigned int)cl->uid);
	cl->reload_wait = 1;
	cl->reload_seq = ~0ULL;		/* known once reload returns */
	if (c->src->reload(c->src->arg, &seq) == -1) {
		cl->reload_wait = 0;
		control_answer(cl, NULL, "acceptd is starting or stopping: "
		    "not reloading now");
		return;
	}
	cl->reload_seq = seq;
	/* Its reload may have ended already (it could not start). */
	if (c->done_seq >= seq && !cl->answered)
		control_reload_answer(cl);
}

/* Answer a reload request with the result of the last reload. */
static void
control_reload_answer(struct control_client *cl)
{
	struct control	*c = cl->c;
	struct evbuffer	*b;
	size_t		 i;

	if (c->done_errs.n == 0) {
		if ((b = evbuffer_new()) != NULL)
			evbuffer_add_printf(b, "reloaded\n");
		control_answer(cl, b, NULL);
		if (b != NULL)
			evbuffer_free(b);
		return;
	}
	if ((b = evbuffer_new()) != NULL) {
		for (i = 0; i < c->done_errs.n; i++)
			evbuffer_add_printf(b, "%s\n", c->done_errs.v[i]);
	}
	control_answer(cl, b, "reload failed: the running configuration is "
	    "kept");
	if (b != NULL)
		evbuffer_free(b);
}

/* help: the commands. */
static void
control_help(struct control_client *cl, char **args)
{
	struct evbuffer	*b;
	size_t		 i;

	if ((b = evbuffer_new()) == NULL) {
		control_answer(cl, NULL, "out of memory");
		return;
	}
	for (i = 0; i < nitems(control_commands); i++)
		evbuffer_add_printf(b, "%s\n", control_commands[i].usage);
	control_answer(cl, b, NULL);
	evbuffer_free(b);
}
