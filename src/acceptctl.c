/*
 * acceptctl: send one command to acceptd's control socket and print the
 * answer. Exit status: 0 done, 1 acceptd answered with an error or could
 * not be reached, 2 usage error.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ACCEPTCTL_SOCKET	"/run/acceptd/control.sock"
#define ACCEPTCTL_TIMEOUT	60	/* seconds; a reload may take a while */
#define ACCEPTCTL_MAX_ANSWER	(64 * 1024 * 1024)

static const struct option acceptctl_longopts[] = {
	{ "socket",	required_argument,	NULL, 's' },
	{ "timeout",	required_argument,	NULL, 't' },
	{ "help",	no_argument,		NULL, 'h' },
	{ "version",	no_argument,		NULL, 'V' },
	{ NULL,		0,			NULL, 0 }
};

/* The commands acceptctl knows, and how many arguments each takes. */
static const struct {
	const char	*name;
	const char	*sub;
	int		 nargs;
} acceptctl_commands[] = {
	{ "stats", NULL, 0 },
	{ "show", "conns", 0 },
	{ "show", "backends", 0 },
	{ "disable", NULL, 1 },
	{ "enable", NULL, 1 },
	{ "kill", NULL, 1 },
	{ "reload", NULL, 0 },
	{ "help", NULL, 0 }
};

static void	 acceptctl_usage(FILE *);
static int	 acceptctl_check(int, char **);
static long long acceptctl_now_ms(void);
static int	 acceptctl_wait(int, short, long long);
static int	 acceptctl_connect(const char *, long long);
static int	 acceptctl_send(int, const char *, size_t, long long);
static char	*acceptctl_receive(int, long long, size_t *);

/* Print the usage message. */
static void
acceptctl_usage(FILE *f)
{
	fprintf(f,
	    "usage: acceptctl [-s SOCKET] [-t SECONDS] COMMAND [ARGUMENT]\n"
	    "  -s, --socket=PATH    acceptd's control_socket (default: %s)\n"
	    "  -t, --timeout=SECS   give up after this long (default: %d)\n"
	    "  -V, --version        print the version and exit\n"
	    "  -h, --help           print this help and exit\n"
	    "commands:\n"
	    "  stats                    every counter, as JSON\n"
	    "  show conns               the open connections\n"
	    "  show backends            the backends and their state\n"
	    "  disable LISTENER/ADDRESS no new connections to that backend\n"
	    "  enable LISTENER/ADDRESS  new connections to it again\n"
	    "  kill ID                  close a connection (id from show "
	    "conns)\n"
	    "  reload                   reload the configuration, as SIGHUP "
	    "does\n",
	    ACCEPTCTL_SOCKET, ACCEPTCTL_TIMEOUT);
}

/* Is this a command acceptctl knows, with its number of arguments? */
static int
acceptctl_check(int argc, char **argv)
{
	size_t	 i;
	int	 words;

	for (i = 0; i < sizeof acceptctl_commands /
	    sizeof acceptctl_commands[0]; i++) {
		if (strcmp(argv[0], acceptctl_commands[i].name) != 0)
			continue;
		words = 1;
		if (acceptctl_commands[i].sub != NULL) {
			if (argc < 2 ||
			    strcmp(argv[1], acceptctl_commands[i].sub) != 0)
				continue;
			words = 2;
		}
		if (argc - words == acceptctl_commands[i].nargs)
			return (0);
		fprintf(stderr, "acceptctl: '%s%s%s' takes %s\n", argv[0],
		    words == 2 ? " " : "", words == 2 ? argv[1] : "",
		    acceptctl_commands[i].nargs == 0 ? "no argument" :
		    "one argument");
		return (-1);
	}
	fprintf(stderr, "acceptctl: unknown command '%s'\n", argv[0]);
	return (-1);
}

/* Milliseconds on the monotonic clock. */
static long long
acceptctl_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Wait until fd is ready for events or the deadline; -1: timed out. */
static int
acceptctl_wait(int fd, short events, long long deadline)
{
	struct pollfd	 pfd;
	long long	 left;
	int		 r;

	for (;;) {
		if ((left = deadline - acceptctl_now_ms()) <= 0) {
			errno = ETIMEDOUT;
			return (-1);
		}
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		r = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return (-1);
		if (r > 0)
			return (0);
	}
}

/* Connect to the control socket; -1 with a message printed. */
static int
acceptctl_connect(const char *path, long long deadline)
{
	struct sockaddr_un	 sun;
	socklen_t		 len = sizeof sun;
	int			 fd, err = 0;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		fprintf(stderr, "acceptctl: %s: path too long\n", path);
		return (-1);
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
	if (fd == -1) {
		fprintf(stderr, "acceptctl: socket: %s\n", strerror(errno));
		return (-1);
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
		return (fd);
	if (errno == EAGAIN || errno == EINPROGRESS) {
		/* The backlog is full: acceptd is busy with other clients. */
		if (acceptctl_wait(fd, POLLOUT, deadline) == 0) {
			len = sizeof err;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
			    &len) == 0 && err == 0)
				return (fd);
			errno = err;
		}
	}
	fprintf(stderr, "acceptctl: cannot connect to %s: %s%s\n", path,
	    strerror(errno), errno == ENOENT || errno == ECONNREFUSED ?
	    " (is acceptd running with control_socket set to it?)" : "");
	close(fd);
	return (-1);
}

/* Send the whole request; -1 with errno set. */
static int
acceptctl_send(int fd, const char *p, size_t len, long long deadline)
{
	ssize_t	 n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if (acceptctl_wait(fd, POLLOUT, deadline) == -1)
				return (-1);
			continue;
		}
		if (n == -1)
			return (-1);
		p += n;
		len -= (size_t)n;
	}
	return (0);
}

/* Read the answer up to EOF; NULL with errno set. */
static char *
acceptctl_receive(int fd, long long deadline, size_t *lenp)
{
	char	*buf = NULL, *nbuf;
	size_t	 len = 0, cap = 0;
	ssize_t	 n;

	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			if (cap > ACCEPTCTL_MAX_ANSWER ||
			    (nbuf = realloc(buf, cap)) == NULL) {
				free(buf);
				errno = ENOMEM;
				return (NULL);
			}
			buf = nbuf;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		/* acceptd closed with our bytes unread: the answer is over. */
		if (n == -1 && errno == ECONNRESET && len > 0)
			break;
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if (acceptctl_wait(fd, POLLIN, deadline) == -1) {
				free(buf);
				return (NULL);
			}
			continue;
		}
		if (n == -1) {
			free(buf);
			return (NULL);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*lenp = len;
	return (buf);
}

int
main(int argc, char **argv)
{
	const char	*path = ACCEPTCTL_SOCKET;
	char		*req = NULL, *answer, *body, *end;
	long long	 deadline, timeout = ACCEPTCTL_TIMEOUT;
	size_t		 len, rlen = 0;
	int		 ch, fd, i, rc, send_errno;

	while ((ch = getopt_long(argc, argv, "+s:t:hV", acceptctl_longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 's':
			path = optarg;
			break;
		case 't':
			errno = 0;
			timeout = strtoll(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg ||
			    timeout < 1 || timeout > 86400) {
				fprintf(stderr, "acceptctl: invalid timeout "
				    "'%s': expected seconds, 1 to 86400\n",
				    optarg);
				return (2);
			}
			break;
		case 'h':
			acceptctl_usage(stdout);
			return (0);
		case 'V':
			printf("acceptctl %s\n", PACKAGE_VERSION);
			return (0);
		default:
			acceptctl_usage(stderr);
			return (2);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		fprintf(stderr, "acceptctl: no command given\n");
		acceptctl_usage(stderr);
		return (2);
	}
	if (acceptctl_check(argc, argv) == -1) {
		acceptctl_usage(stderr);
		return (2);
	}

	for (i = 0; i < argc; i++)
		rlen += strlen(argv[i]) + 1;
	if ((req = malloc(rlen + 1)) == NULL) {
		fprintf(stderr, "acceptctl: out of memory\n");
		return (1);
	}
	req[0] = '\0';
	for (i = 0; i < argc; i++) {
		strcat(req, argv[i]);
		strcat(req, i + 1 < argc ? " " : "\n");
	}

	deadline = acceptctl_now_ms() + timeout * 1000;
	if ((fd = acceptctl_connect(path, deadline)) == -1) {
		free(req);
		return (1);
	}
	/* A refused client is answered and closed before it sends. */
	send_errno = 0;
	if (acceptctl_send(fd, req, strlen(req), deadline) == -1)
		send_errno = errno;
	if ((answer = acceptctl_receive(fd, deadline, &len)) == NULL ||
	    (len == 0 && send_errno != 0)) {
		if (send_errno != 0 && errno != ETIMEDOUT)
			errno = send_errno;
		fprintf(stderr, "acceptctl: %s: %s\n", path,
		    errno == ETIMEDOUT ? "no answer in time" : strerror(errno));
		free(answer);
		close(fd);
		free(req);
		return (1);
	}
	close(fd);
	free(req);

	if ((body = memchr(answer, '\n', len)) == NULL) {
		fprintf(stderr, "acceptctl: %s: the connection closed before "
		    "a whole answer came\n", path);
		free(answer);
		return (1);
	}
	*body++ = '\0';
	if (strcmp(answer, "OK") == 0) {
		fputs(body, stdout);
		rc = fflush(stdout) == 0 ? 0 : 1;
	} else if (strncmp(answer, "ERROR ", 6) == 0) {
		fprintf(stderr, "acceptctl: %s\n", answer + 6);
		fputs(body, stderr);
		rc = 1;
	} else {
		fprintf(stderr, "acceptctl: %s: unexpected answer '%s'\n",
		    path, answer);
		rc = 1;
	}
	free(answer);
	return (rc);
}
