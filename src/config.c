/*
 * The configuration file: libconfig 1.5 in, a validated immutable struct
 * config out. Every error is collected as "FILE:LINE: message" naming the
 * setting and what was expected. No libevent here.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acceptd.h"

#define CONFIG_MAX_FILE_SIZE	(16 * 1024 * 1024)
#define CONFIG_MAX_INCLUDES	64	/* files scanned for one load */
#define CONFIG_MAX_DEPTH	10	/* @include nesting, as libconfig */
#define CONFIG_MAX_CONNECTIONS	100000000LL
#define CONFIG_MAX_WORKERS	1024
#define CONFIG_CHILD_TIMEOUT	10	/* seconds, for a check in a child */
#define CONFIG_CHILD_MAX_REPORT	(1024 * 1024)
#define CONFIG_DEFAULT_RESOLV	"/etc/resolv.conf"

#define MS_SEC	1000LL
#define MS_MIN	(60 * MS_SEC)
#define MS_HOUR	(60 * MS_MIN)

/* Where a key may appear. */
enum config_scope {
	CONFIG_SCOPE_GLOBAL,
	CONFIG_SCOPE_DEFAULTS,
	CONFIG_SCOPE_LISTENER,
	CONFIG_SCOPE_BACKEND,
	CONFIG_SCOPE_HEALTH
};

/* How a key is written and stored. */
enum config_kind {
	CONFIG_KIND_DURATION,	/* long long ms: seconds or "500ms" */
	CONFIG_KIND_SIZE,	/* size_t bytes: bytes or "64k" */
	CONFIG_KIND_LLONG,	/* long long */
	CONFIG_KIND_INT,	/* int */
	CONFIG_KIND_BOOL,	/* int */
	CONFIG_KIND_ENUM,	/* int, from words */
	CONFIG_KIND_WORKERS,	/* int, or "auto" = 0 */
	CONFIG_KIND_STRING,	/* char *, NULL when unset */
	CONFIG_KIND_NAME,	/* listener name */
	CONFIG_KIND_LISTEN,	/* struct address array */
	CONFIG_KIND_BACKENDS,	/* struct backend_conf array */
	CONFIG_KIND_ADDRESS,	/* one backend address */
	CONFIG_KIND_CIDRS,	/* struct cidr array */
	CONFIG_KIND_HEALTH,	/* struct health_conf */
	CONFIG_KIND_DEFAULTS,	/* the defaults group */
	CONFIG_KIND_LISTENERS	/* the listeners list */
};

/* One known setting. */
struct config_key {
	const char		*name;
	enum config_kind	 kind;
	size_t			 off;
	long long		 min;
	long long		 max;
	const char *const	*words;		/* CONFIG_KIND_ENUM */
	size_t			 nwords;
};

/* A setting whose behaviour is not built yet: only the default is taken. */
struct config_unbuilt {
	enum config_scope	 scope;
	const char		*key;
	const char		*accepted;
};

/*
 * An integer literal outside int range. libconfig 1.5 silently truncates
 * those, so every file is scanned for them before libconfig reads it.
 */
struct config_literal {
	char			*file;	/* libconfig's name for it */
	int			 line;	/* of the setting's name */
	char			*name;	/* the setting's name */
	char			*text;
	long long		 value;
	int			 overflow;	/* beyond long long */
};

/* Everything one config_load needs. */
struct config_ctx {
	struct causes		*errs;
	int			 errors;
	const char		*path;
	char			*dir;		/* include directory */
	char			**names;	/* libconfig's file names */
	size_t			 nnames;	/* as conf->files */
	struct config_literal	*lits;
	size_t			 nlits;
	struct config		*conf;
	struct config		*gdef;	/* built-in defaults */
	struct listener_conf	 ldef;	/* built-in defaults */
	struct listener_conf	 defaults; /* ldef + the defaults group */
	struct backend_conf	 bdef;
};

/* The child's report to config_check_in_child: 'R', causes, 'E'. */
struct config_report {
	char			*buf;
	size_t			 len;
};

static const char *const config_log_levels[] = {
	"error", "warning", "notice", "info", "debug"
};
static const char *const config_log_conns[] = {
	"none", "close", "all"
};
static const char *const config_balances[] = {
	"roundrobin", "leastconn", "source", "first"
};
static const char *const config_send_proxies[] = {
	"none", "v1", "v2"
};

#define G(f)	offsetof(struct config, f)
#define L(f)	offsetof(struct listener_conf, f)
#define B(f)	offsetof(struct backend_conf, f)
#define H(f)	offsetof(struct health_conf, f)
#define WORDS(w) (w), nitems(w)

/* Top-level settings, in the order -T prints them. */
static const struct config_key config_global_keys[] = {
	{ "user", CONFIG_KIND_STRING, G(user), 0, 0, NULL, 0 },
	{ "group", CONFIG_KIND_STRING, G(group), 0, 0, NULL, 0 },
	{ "log_level", CONFIG_KIND_ENUM, G(log_level), 0, 0,
	    WORDS(config_log_levels) },
	{ "log_connections", CONFIG_KIND_ENUM, G(log_connections), 0, 0,
	    WORDS(config_log_conns) },
	{ "max_connections", CONFIG_KIND_LLONG, G(max_connections), 0,
	    CONFIG_MAX_CONNECTIONS, NULL, 0 },
	{ "shutdown_timeout", CONFIG_KIND_DURATION, G(shutdown_timeout_ms), 0,
	    24 * MS_HOUR, NULL, 0 },
	{ "workers", CONFIG_KIND_WORKERS, G(workers), 1, CONFIG_MAX_WORKERS,
	    NULL, 0 },
	{ "control_socket", CONFIG_KIND_STRING, G(control_socket), 0, 0,
	    NULL, 0 },
	{ "metrics", CONFIG_KIND_STRING, G(metrics), 0, 0, NULL, 0 },
	{ "resolv_conf", CONFIG_KIND_STRING, G(resolv_conf), 0, 0, NULL, 0 },
	{ "defaults", CONFIG_KIND_DEFAULTS, 0, 0, 0, NULL, 0 },
	{ "listeners", CONFIG_KIND_LISTENERS, 0, 0, 0, NULL, 0 }
};

/* Listener settings (also valid in defaults), in the order -T prints them. */
static const struct config_key config_listener_keys[] = {
	{ "name", CONFIG_KIND_NAME, L(name), 0, 0, NULL, 0 },
	{ "listen", CONFIG_KIND_LISTEN, L(listen), 0, 0, NULL, 0 },
	{ "backends", CONFIG_KIND_BACKENDS, L(backends), 0, 0, NULL, 0 },
	{ "balance", CONFIG_KIND_ENUM, L(balance), 0, 0,
	    WORDS(config_balances) },
	{ "max_connections", CONFIG_KIND_LLONG, L(max_connections), 0,
	    CONFIG_MAX_CONNECTIONS, NULL, 0 },
	{ "max_connections_per_ip", CONFIG_KIND_LLONG,
	    L(max_connections_per_ip), 0, CONFIG_MAX_CONNECTIONS, NULL, 0 },
	{ "allow", CONFIG_KIND_CIDRS, L(allow), 0, 0, NULL, 0 },
	{ "deny", CONFIG_KIND_CIDRS, L(deny), 0, 0, NULL, 0 },
	{ "send_proxy", CONFIG_KIND_ENUM, L(send_proxy), 0, 0,
	    WORDS(config_send_proxies) },
	{ "accept_proxy", CONFIG_KIND_BOOL, L(accept_proxy), 0, 0, NULL, 0 },
	{ "backlog", CONFIG_KIND_INT, L(backlog), 1, 65535, NULL, 0 },
	{ "reuseport", CONFIG_KIND_BOOL, L(reuseport), 0, 0, NULL, 0 },
	{ "freebind", CONFIG_KIND_BOOL, L(freebind), 0, 0, NULL, 0 },
	{ "defer_accept", CONFIG_KIND_BOOL, L(defer_accept), 0, 0, NULL, 0 },
	{ "nodelay", CONFIG_KIND_BOOL, L(nodelay), 0, 0, NULL, 0 },
	{ "keepalive", CONFIG_KIND_BOOL, L(keepalive), 0, 0, NULL, 0 },
	{ "splice", CONFIG_KIND_BOOL, L(splice), 0, 0, NULL, 0 },
	{ "health_check", CONFIG_KIND_HEALTH, L(health), 0, 0, NULL, 0 },
	{ "connect_timeout", CONFIG_KIND_DURATION, L(connect_timeout_ms), 1,
	    MS_HOUR, NULL, 0 },
	{ "idle_timeout", CONFIG_KIND_DURATION, L(idle_timeout_ms), 0,
	    168 * MS_HOUR, NULL, 0 },
	{ "fin_timeout", CONFIG_KIND_DURATION, L(fin_timeout_ms), 0,
	    24 * MS_HOUR, NULL, 0 },
	{ "resolve_interval", CONFIG_KIND_DURATION, L(resolve_interval_ms),
	    MS_SEC, 24 * MS_HOUR, NULL, 0 },
	{ "retries", CONFIG_KIND_INT, L(retries), 0, 100, NULL, 0 },
	{ "buffer_size", CONFIG_KIND_SIZE, L(buffer_size), 4096,
	    64 * 1024 * 1024, NULL, 0 }
};

/* Keys of a backend group in the backends list. */
static const struct config_key config_backend_keys[] = {
	{ "address", CONFIG_KIND_ADDRESS, B(addr), 0, 0, NULL, 0 },
	{ "weight", CONFIG_KIND_INT, B(weight), 1, 256, NULL, 0 },
	{ "backup", CONFIG_KIND_BOOL, B(backup), 0, 0, NULL, 0 }
};

/* Keys of the health_check group. */
static const struct config_key config_health_keys[] = {
	{ "interval", CONFIG_KIND_DURATION, H(interval_ms), 100, MS_HOUR,
	    NULL, 0 },
	{ "timeout", CONFIG_KIND_DURATION, H(timeout_ms), 10, MS_HOUR,
	    NULL, 0 },
	{ "rise", CONFIG_KIND_INT, H(rise), 1, 100, NULL, 0 },
	{ "fall", CONFIG_KIND_INT, H(fall), 1, 100, NULL, 0 }
};

/*
 * Settings whose behaviour is not built in this version: any value but the
 * default is an error, so that nothing is silently ignored. Remove a line
 * once its behaviour exists.
 */
static const struct config_unbuilt config_unbuilt[] = {
	{ CONFIG_SCOPE_GLOBAL, NULL, NULL }	/* the end */
};

static void	 config_error(struct config_ctx *, const config_setting_t *,
		     const char *, ...) printflike(3, 4);
static void	 config_error_at(struct config_ctx *, const char *, int,
		     const char *, ...) printflike(4, 5);
static const char *config_display(struct config_ctx *, const char *);
static const char *config_file_of(struct config_ctx *,
		     const config_setting_t *);
static int	 config_check_path(const char *, char **);
static int	 config_read_text(const char *, char **, size_t *, char **);
static int	 config_isword(int);
static void	 config_scan(struct config_ctx *, const char *, const char *,
		     int);
static void	 config_scan_text(struct config_ctx *, const char *,
		     const char *, size_t, int);
static size_t	 config_scan_include(struct config_ctx *, const char *,
		     const char *, size_t, size_t, int, int);
static void	 config_scan_number(struct config_ctx *, const char *,
		     const char *, size_t, const char *, int);
static const struct config_literal *config_literal(struct config_ctx *,
		     const config_setting_t *);
static const char *config_describe(struct config_ctx *,
		     const config_setting_t *, char *, size_t);
static void	 config_quote(const char *, char *, size_t);
static size_t	 config_distance(const char *, const char *);
static const struct config_key *config_find_key(const struct config_key *,
		     size_t, const char *);
static const char *config_closest(const char *, const struct config_key *,
		     size_t);
static void	 config_unknown(struct config_ctx *,
		     const config_setting_t *, enum config_scope,
		     const struct config_key *, size_t);
static int	 config_get_int(struct config_ctx *, const config_setting_t *,
		     const char *, long long, long long, long long *);
static int	 config_get_bool(struct config_ctx *,
		     const config_setting_t *, const char *, int *);
static int	 config_get_string(struct config_ctx *,
		     const config_setting_t *, const char *, const char *,
		     const char **);
static int	 config_get_duration(struct config_ctx *,
		     const config_setting_t *, const struct config_key *,
		     long long *);
static int	 config_get_size(struct config_ctx *,
		     const config_setting_t *, const struct config_key *,
		     long long *);
static int	 config_get_enum(struct config_ctx *,
		     const config_setting_t *, const struct config_key *,
		     int *);
static int	 config_get_workers(struct config_ctx *,
		     const config_setting_t *, const struct config_key *,
		     int *);
static int	 config_nelems(const config_setting_t *);
static config_setting_t *config_elem(const config_setting_t *, int);
static const char *config_keep_file(struct config_ctx *,
		     const config_setting_t *);
static int	 config_parse_key(struct config_ctx *, config_setting_t *,
		     const struct config_key *, void *, enum config_scope);
static int	 config_parse_string(struct config_ctx *, config_setting_t *,
		     const struct config_key *, char **);
static int	 config_parse_name(struct config_ctx *, config_setting_t *,
		     struct listener_conf *, enum config_scope);
static int	 config_listen_conflict(const struct address *,
		     const struct address *);
static int	 config_parse_listen(struct config_ctx *, config_setting_t *,
		     struct listener_conf *, enum config_scope);
static int	 config_parse_address(struct config_ctx *, config_setting_t *,
		     const char *, struct address *);
static int	 config_parse_backends(struct config_ctx *,
		     config_setting_t *, struct listener_conf *);
static void	 config_cidr_list(struct listener_conf *,
		     const struct config_key *, struct cidr ***, size_t **);
static int	 config_parse_cidrs(struct config_ctx *, config_setting_t *,
		     const struct config_key *, struct listener_conf *);
static int	 config_parse_health(struct config_ctx *, config_setting_t *,
		     struct health_conf *);
static void	 config_parse_group(struct config_ctx *, config_setting_t *,
		     enum config_scope, const struct config_key *, size_t,
		     void *);
static void	 config_parse_listener(struct config_ctx *,
		     config_setting_t *, size_t);
static void	 config_parse_listeners(struct config_ctx *,
		     config_setting_t *);
static void	 config_parse_root(struct config_ctx *, config_setting_t *);
static int	 config_is_default(const struct config_key *, const void *,
		     const void *);
static void	 config_check_unbuilt(struct config_ctx *,
		     const config_setting_t *, enum config_scope,
		     const struct config_key *, const char *, const void *);
static void	 config_global_defaults(struct config *);
static void	 config_listener_defaults(struct listener_conf *);
static void	 config_listener_copy(struct listener_conf *,
		     const struct listener_conf *);
static void	 config_free_listen(struct listener_conf *);
static void	 config_free_backends(struct listener_conf *);
static void	 config_free_cidrs(struct cidr **, size_t *);
static void	 config_listener_free(struct listener_conf *);
static void	 config_free(struct config *);
static void	 config_ctx_free(struct config_ctx *);
static void	 config_dump_string(FILE *, const char *);
static void	 config_dump_key(FILE *, const char *,
		     const struct config_key *, const void *);
static void	 config_dump_listener(FILE *, const struct listener_conf *);
static int	 config_write_all(int, const char *, size_t);
static __dead void config_child(const char *, int);
static void	 config_close_from(int);
static int	 config_check_once(const char *, struct causes *, int *);
static void	 config_report_add(struct config_report *, const char *,
		     size_t);
static int	 config_child_collect(pid_t, int, int, struct config_report *,
		     struct config_report *);
static int	 config_pipe(int[2]);

/* Record an error at a setting's file and line. */
static void
config_error(struct config_ctx *ctx, const config_setting_t *s,
    const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	causes_add(ctx->errs, "%s:%u: %s", config_file_of(ctx, s),
	    (unsigned)config_setting_source_line(s), msg);
	free(msg);
	ctx->errors++;
}

/* Record an error at a file (as libconfig names it) and line. */
static void
config_error_at(struct config_ctx *ctx, const char *file, int line,
    const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	causes_add(ctx->errs, "%s:%d: %s", config_display(ctx, file), line,
	    msg);
	free(msg);
	ctx->errors++;
}

/*
 * The path to show for a file as libconfig names it: the main file as
 * given, an included one inside the include directory.
 */
static const char *
config_display(struct config_ctx *ctx, const char *name)
{
	size_t	 i;

	if (name == NULL)
		return (ctx->path);
	for (i = 0; i < ctx->nnames; i++) {
		if (strcmp(ctx->names[i], name) == 0)
			return (ctx->conf->files[i]);
	}
	return (name);
}

/* The file a setting was read from, as a path to show. */
static const char *
config_file_of(struct config_ctx *ctx, const config_setting_t *s)
{
	return (config_display(ctx, config_setting_source_file(s)));
}

/* The file a setting was read from, as a string the config owns. */
static const char *
config_keep_file(struct config_ctx *ctx, const config_setting_t *s)
{
	const char	*name = config_setting_source_file(s);
	size_t		 i;

	for (i = 0; name != NULL && i < ctx->nnames; i++) {
		if (strcmp(ctx->names[i], name) == 0)
			return (ctx->conf->files[i]);
	}
	return (ctx->conf->path);
}

/*
 * Check that the main file is a readable regular file: libconfig 1.5 says
 * only "file I/O error" (and exits for a directory).
 */
static int
config_check_path(const char *path, char **cause)
{
	struct stat	 sb;
	int		 fd;

	if (stat(path, &sb) != 0) {
		*cause = xstrdup(strerror(errno));
		return (-1);
	}
	if (S_ISDIR(sb.st_mode)) {
		*cause = xstrdup("is a directory, not a file");
		return (-1);
	}
	if (!S_ISREG(sb.st_mode)) {
		*cause = xstrdup("is not a regular file");
		return (-1);
	}
	if (sb.st_size > CONFIG_MAX_FILE_SIZE) {
		xasprintf(cause, "file too large (%lld bytes, at most %d)",
		    (long long)sb.st_size, CONFIG_MAX_FILE_SIZE);
		return (-1);
	}
	if ((fd = open(path, O_RDONLY|O_CLOEXEC)) == -1) {
		*cause = xstrdup(strerror(errno));
		return (-1);
	}
	close(fd);
	return (0);
}

/* Read a whole regular file of at most CONFIG_MAX_FILE_SIZE bytes. */
static int
config_read_text(const char *path, char **text, size_t *len, char **cause)
{
	struct stat	 sb;
	char		*buf;
	size_t		 size, used = 0;
	ssize_t		 n;
	int		 fd;

	if ((fd = open(path, O_RDONLY|O_CLOEXEC|O_NONBLOCK)) == -1) {
		*cause = xstrdup(strerror(errno));
		return (-1);
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
	    sb.st_size > CONFIG_MAX_FILE_SIZE) {
		*cause = xstrdup("not a regular file of at most 16 MB");
		close(fd);
		return (-1);
	}
	size = (size_t)sb.st_size + 2;
	buf = xmalloc(size);
	for (;;) {
		if (used + 1 >= size) {
			if (size > CONFIG_MAX_FILE_SIZE) {
				*cause = xstrdup("file too large");
				goto fail;
			}
			buf = xreallocarray(buf, 2, size);
			size *= 2;
		}
		n = read(fd, buf + used, size - used - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			*cause = xstrdup(strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	*text = buf;
	*len = used;
	return (0);

 fail:
	free(buf);
	close(fd);
	return (-1);
}

/* Can c continue a libconfig setting name? */
static int
config_isword(int c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '*');
}

/*
 * Look at one file (and what it includes) before libconfig reads it: note
 * every file, every integer literal libconfig would truncate, and includes
 * that would make libconfig exit.
 */
static void
config_scan(struct config_ctx *ctx, const char *name, const char *path,
    int depth)
{
	struct config	*conf = ctx->conf;
	char		*text, *cause;
	size_t		 len, i;

	for (i = 0; i < ctx->nnames; i++) {
		if (strcmp(ctx->names[i], name) == 0)
			return;
	}
	if (ctx->nnames == CONFIG_MAX_INCLUDES)
		return;
	ctx->names = xreallocarray(ctx->names, ctx->nnames + 1,
	    sizeof *ctx->names);
	ctx->names[ctx->nnames++] = xstrdup(name);
	conf->files = xreallocarray(conf->files, conf->nfiles + 1,
	    sizeof *conf->files);
	conf->files[conf->nfiles++] = xstrdup(path);

	/* What cannot be read here, libconfig reports (or exits on). */
	if (config_read_text(path, &text, &len, &cause) != 0) {
		free(cause);
		return;
	}
	config_scan_text(ctx, name, text, len, depth);
	free(text);
}

/* Tokenize a file as libconfig does, enough to find literals and includes. */
static void
config_scan_text(struct config_ctx *ctx, const char *name, const char *text,
    size_t len, int depth)
{
	char	 setting[CONF_MAX_NAME + 1] = "";
	size_t	 i = 0, j, n;
	int	 line = 1, setting_line = 0, bol = 1, c;

	while (i < len) {
		c = (unsigned char)text[i];
		if (c == '\n') {
			line++;
			bol = 1;
			i++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\f')
			i++;
		else if (c == '#' || (c == '/' && text[i + 1] == '/')) {
			while (i < len && text[i] != '\n')
				i++;
		} else if (c == '/' && text[i + 1] == '*') {
			for (i += 2; i < len && (text[i] != '*' ||
			    text[i + 1] != '/'); i++) {
				if (text[i] == '\n')
					line++;
			}
			i += 2;
			bol = 0;
		} else if (c == '@' && bol) {
			i = config_scan_include(ctx, name, text, len, i, line,
			    depth);
			bol = 0;
		} else if (c == '"') {
			for (i++; i < len && text[i] != '"'; i++) {
				if (text[i] == '\\' && text[i + 1] != '\n')
					i++;
				else if (text[i] == '\n')
					line++;
			}
			i++;
			bol = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    c == '*') {
			for (j = i; j < len && config_isword(text[j]); j++)
				/* nothing */;
			n = j - i;
			while (j < len && (text[j] == ' ' || text[j] == '\t' ||
			    text[j] == '\r' || text[j] == '\n'))
				j++;
			if (j < len && (text[j] == '=' || text[j] == ':')) {
				if (n > CONF_MAX_NAME)
					n = CONF_MAX_NAME;
				memcpy(setting, text + i, n);
				setting[n] = '\0';
				setting_line = line;
			}
			i += n;
			while (i < len && config_isword(text[i]))
				i++;
			bol = 0;
		} else if ((c >= '0' && c <= '9') || c == '+' || c == '-' ||
		    c == '.') {
			for (j = i + 1; j < len; j++) {
				if (config_isword(text[j]) && text[j] != '-')
					continue;
				if (text[j] == '.')
					continue;
				if ((text[j] == '+' || text[j] == '-') &&
				    (text[j - 1] == 'e' || text[j - 1] == 'E'))
					continue;
				break;
			}
			config_scan_number(ctx, name, text + i, j - i, setting,
			    setting_line);
			i = j;
			bol = 0;
		} else {
			i++;
			bol = 0;
		}
	}
}

/*
 * An "@include" line (libconfig 1.5 takes it only at the start of a line):
 * check the file now, since libconfig exits on a directory and does not
 * name a missing file, and scan it. Returns where scanning goes on.
 */
static size_t
config_scan_include(struct config_ctx *ctx, const char *name,
    const char *text, size_t len, size_t i, int line, int depth)
{
	struct stat	 sb;
	char		*file, *path;
	size_t		 n = 0;

	if (len - i < 9 || strncmp(text + i, "@include", 8) != 0 ||
	    (text[i + 8] != ' ' && text[i + 8] != '\t'))
		return (i + 1);
	for (i += 8; i < len && (text[i] == ' ' || text[i] == '\t'); i++)
		/* nothing */;
	if (i == len || text[i] != '"')
		return (i);
	file = xmalloc(len - i);
	for (i++; i < len && text[i] != '"' && text[i] != '\n'; i++) {
		if (text[i] == '\\' && (text[i + 1] == '\\' ||
		    text[i + 1] == '"'))
			i++;
		file[n++] = text[i];
	}
	file[n] = '\0';
	if (i < len && text[i] == '"')
		i++;

	xasprintf(&path, "%s/%s", ctx->dir, file);
	if (stat(path, &sb) != 0) {
		config_error_at(ctx, name, line, "@include \"%s\": %s: %s",
		    file, path, strerror(errno));
	} else if (S_ISDIR(sb.st_mode)) {
		config_error_at(ctx, name, line, "@include \"%s\": %s is a "
		    "directory, not a file", file, path);
	} else if (!S_ISREG(sb.st_mode)) {
		config_error_at(ctx, name, line, "@include \"%s\": %s is not "
		    "a regular file", file, path);
	} else if (depth < CONFIG_MAX_DEPTH)
		config_scan(ctx, file, path, depth + 1);
	free(path);
	free(file);
	return (i);
}

/*
 * Note an integer literal outside int range, with the setting it belongs
 * to, so that its real value is used instead of libconfig's truncated one.
 */
static void
config_scan_number(struct config_ctx *ctx, const char *name, const char *tok,
    size_t len, const char *setting, int setting_line)
{
	struct config_literal	*lit;
	const char		*p = tok, *end = tok + len;
	unsigned long long	 u = 0, d;
	int			 neg = 0, hex = 0, overflow = 0;
	long long		 v;

	if (*p == '+' || *p == '-')
		neg = (*p++ == '-');
	if (end - p > 0 && end[-1] == 'L')
		end--;
	if (end - p > 0 && end[-1] == 'L')
		end--;
	if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		if (neg || tok[0] == '+')
			return;
		hex = 1;
		p += 2;
	}
	if (p == end)
		return;
	for (; p < end; p++) {
		if (*p >= '0' && *p <= '9')
			d = (unsigned long long)(*p - '0');
		else if (hex && *p >= 'a' && *p <= 'f')
			d = (unsigned long long)(*p - 'a' + 10);
		else if (hex && *p >= 'A' && *p <= 'F')
			d = (unsigned long long)(*p - 'A' + 10);
		else
			return;
		if (__builtin_mul_overflow(u, hex ? 16ULL : 10ULL, &u) ||
		    __builtin_add_overflow(u, d, &u))
			overflow = 1;
	}
	if (!overflow && u > (neg ? (unsigned long long)LLONG_MAX + 1 :
	    (unsigned long long)LLONG_MAX))
		overflow = 1;
	v = 0;
	if (!overflow)
		v = neg ? (long long)(0 - u) : (long long)u;
	if (!overflow && v >= INT_MIN && v <= INT_MAX)
		return;

	ctx->lits = xreallocarray(ctx->lits, ctx->nlits + 1,
	    sizeof *ctx->lits);
	lit = &ctx->lits[ctx->nlits++];
	lit->file = xstrdup(name);
	lit->line = setting_line;
	lit->name = xstrdup(setting);
	if (len > 40)
		xasprintf(&lit->text, "%.40s...", tok);
	else
		xasprintf(&lit->text, "%.*s", (int)len, tok);
	lit->value = v;
	lit->overflow = overflow;
}

/* The out-of-range literal a setting was written with, if any. */
static const struct config_literal *
config_literal(struct config_ctx *ctx, const config_setting_t *s)
{
	const char	*file = config_setting_source_file(s);
	const char	*name = config_setting_name(s);
	size_t		 i;

	if (file == NULL || name == NULL)
		return (NULL);
	for (i = 0; i < ctx->nlits; i++) {
		if (ctx->lits[i].line == (int)config_setting_source_line(s) &&
		    strcmp(ctx->lits[i].name, name) == 0 &&
		    strcmp(ctx->lits[i].file, file) == 0)
			return (&ctx->lits[i]);
	}
	return (NULL);
}

/* Quote a string for a message, escaped and cut short when long. */
static void
config_quote(const char *str, char *buf, size_t size)
{
	size_t	 len = strlen(str), o = 0, i;
	int	 c;

	buf[o++] = '"';
	for (i = 0; i < len && o + 8 < size; i++) {
		c = (unsigned char)str[i];
		if (i == 60 && len > 64) {
			snprintf(buf + o, size - o, "...\" (%zu characters)",
			    len);
			return;
		}
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

/* Describe what a setting holds, for "got ..." in a message. */
static const char *
config_describe(struct config_ctx *ctx, const config_setting_t *s, char *buf,
    size_t size)
{
	const struct config_literal	*lit;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		if ((lit = config_literal(ctx, s)) != NULL)
			snprintf(buf, size, "%s", lit->text);
		else
			snprintf(buf, size, "%lld",
			    config_setting_get_int64(s));
		break;
	case CONFIG_TYPE_FLOAT:
		snprintf(buf, size, "a float (%g)",
		    config_setting_get_float(s));
		break;
	case CONFIG_TYPE_STRING:
		config_quote(config_setting_get_string(s), buf, size);
		break;
	case CONFIG_TYPE_BOOL:
		snprintf(buf, size, "%s",
		    config_setting_get_bool(s) ? "true" : "false");
		break;
	case CONFIG_TYPE_ARRAY:
		snprintf(buf, size, config_setting_length(s) == 0 ?
		    "an empty array" : "an array");
		break;
	case CONFIG_TYPE_LIST:
		snprintf(buf, size, config_setting_length(s) == 0 ?
		    "an empty list" : "a list");
		break;
	case CONFIG_TYPE_GROUP:
		snprintf(buf, size, "a group");
		break;
	default:
		snprintf(buf, size, "nothing");
		break;
	}
	return (buf);
}

/* Edit distance between two short names (for "did you mean"). */
static size_t
config_distance(const char *a, const char *b)
{
	size_t	 la = strlen(a), lb = strlen(b), i, j, prev, cur, tmp;
	size_t	 row[CONF_MAX_NAME + 1];

	if (la > CONF_MAX_NAME || lb > CONF_MAX_NAME)
		return (SIZE_MAX);
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			cur = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < cur)
				cur = row[j] + 1;
			if (row[j - 1] + 1 < cur)
				cur = row[j - 1] + 1;
			tmp = row[j];
			row[j] = cur;
			prev = tmp;
		}
	}
	return (row[lb]);
}

/* Find a key by name. */
static const struct config_key *
config_find_key(const struct config_key *keys, size_t nkeys,
    const char *name)
{
	size_t	 i;

	for (i = 0; i < nkeys; i++) {
		if (strcmp(keys[i].name, name) == 0)
			return (&keys[i]);
	}
	return (NULL);
}

/* The known name closest to name, if one is close enough to suggest. */
static const char *
config_closest(const char *name, const struct config_key *keys,
    size_t nkeys)
{
	const char	*best = NULL;
	size_t		 i, d, bestd = SIZE_MAX, max;

	for (i = 0; i < nkeys; i++) {
		d = config_distance(name, keys[i].name);
		max = strlen(keys[i].name) >= 6 ? 2 : 1;
		if (d <= max && d < bestd) {
			best = keys[i].name;
			bestd = d;
		}
	}
	return (best);
}

/*
 * Report a setting not known where it was written: say where it belongs if
 * it is known elsewhere, or suggest the closest known name.
 */
static void
config_unknown(struct config_ctx *ctx, const config_setting_t *s,
    enum config_scope scope, const struct config_key *keys, size_t nkeys)
{
	static const char *const where[] = {
		"at the top level", "in defaults", "in a listener",
		"in a backend group", "in health_check"
	};
	const struct config_key	*other = NULL;
	const char		*name = config_setting_name(s), *best, *hint;
	size_t			 nother = 0;

	if (scope == CONFIG_SCOPE_GLOBAL) {
		other = config_listener_keys;
		nother = nitems(config_listener_keys);
		hint = "a listener setting: put it in 'defaults' or in a "
		    "listener";
	} else if (scope == CONFIG_SCOPE_LISTENER ||
	    scope == CONFIG_SCOPE_DEFAULTS) {
		other = config_global_keys;
		nother = nitems(config_global_keys);
		hint = "a global setting: set it at the top level";
	} else
		hint = NULL;

	if (other != NULL && config_find_key(other, nother, name) != NULL) {
		config_error(ctx, s, "setting '%.64s' cannot be set %s: it is "
		    "%s", name, where[scope], hint);
	} else if ((best = config_closest(name, keys, nkeys)) != NULL) {
		config_error(ctx, s, "unknown setting '%.64s' %s; did you mean "
		    "'%s'?", name, where[scope], best);
	} else if (other != NULL &&
	    (best = config_closest(name, other, nother)) != NULL) {
		config_error(ctx, s, "unknown setting '%.64s' %s; did you mean "
		    "'%s' (%s)?", name, where[scope], best, hint);
	} else {
		config_error(ctx, s, "unknown setting '%.64s' %s "
		    "(acceptd.conf(5) lists the settings)", name, where[scope]);
	}
}

/* Read an integer setting within [min, max]. */
static int
config_get_int(struct config_ctx *ctx, const config_setting_t *s,
    const char *key, long long min, long long max, long long *v)
{
	char		 got[128];
	long long	 n;
	int		 type = config_setting_type(s);

	if ((type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) &&
	    config_literal(ctx, s) == NULL) {
		n = config_setting_get_int64(s);
		if (n >= min && n <= max) {
			*v = n;
			return (0);
		}
	}
	config_error(ctx, s, "setting '%s': expected an integer from %lld to "
	    "%lld, got %s", key, min, max,
	    config_describe(ctx, s, got, sizeof got));
	return (-1);
}

/* Read a boolean setting. */
static int
config_get_bool(struct config_ctx *ctx, const config_setting_t *s,
    const char *key, int *v)
{
	char	 got[128];

	if (config_setting_type(s) == CONFIG_TYPE_BOOL) {
		*v = config_setting_get_bool(s) ? 1 : 0;
		return (0);
	}
	config_error(ctx, s, "setting '%s': expected true or false, got %s",
	    key, config_describe(ctx, s, got, sizeof got));
	return (-1);
}

/* Read a string setting of at most CONF_MAX_STRING characters. */
static int
config_get_string(struct config_ctx *ctx, const config_setting_t *s,
    const char *key, const char *what, const char **v)
{
	const char	*str;
	char		 got[128];
	size_t		 len;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		config_error(ctx, s, "setting '%s': expected %s, got %s", key,
		    what, config_describe(ctx, s, got, sizeof got));
		return (-1);
	}
	str = config_setting_get_string(s);
	if ((len = strlen(str)) > CONF_MAX_STRING) {
		config_error(ctx, s, "setting '%s': expected %s of at most %d "
		    "characters, got a string of %zu characters", key, what,
		    CONF_MAX_STRING, len);
		return (-1);
	}
	*v = str;
	return (0);
}

/* Read a duration: a number of seconds, or a string like "500ms". */
static int
config_get_duration(struct config_ctx *ctx, const config_setting_t *s,
    const struct config_key *k, long long *ms)
{
	char		 got[128], lo[32], hi[32], *cause = NULL;
	long long	 v = -1;
	int		 type = config_setting_type(s);
	size_t		 len;

	if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
		if (config_literal(ctx, s) == NULL) {
			v = config_setting_get_int64(s);
			if (v >= 0 && v <= LLONG_MAX / 1000)
				v *= 1000;
			else
				v = -1;
		}
	} else if (type == CONFIG_TYPE_STRING) {
		len = strlen(config_setting_get_string(s));
		if (len > 64)
			cause = xstrdup("too long");
		else if (parse_duration_string(config_setting_get_string(s),
		    &v, &cause) != 0)
			v = -1;
	}
	if (v >= k->min && v <= k->max) {
		*ms = v;
		return (0);
	}
	config_error(ctx, s, "setting '%s': expected a duration from %s to %s "
	    "(seconds, or a string like \"500ms\", \"3s\", \"10m\", \"1h\"), "
	    "got %s%s%s%s", k->name, format_duration(k->min, lo, sizeof lo),
	    format_duration(k->max, hi, sizeof hi),
	    config_describe(ctx, s, got, sizeof got),
	    cause != NULL ? " (" : "", cause != NULL ? cause : "",
	    cause != NULL ? ")" : "");
	free(cause);
	return (-1);
}

/* Read a size: a number of bytes, or a string like "64k" or "1m". */
static int
config_get_size(struct config_ctx *ctx, const config_setting_t *s,
    const struct config_key *k, long long *bytes)
{
	char		 got[128], lo[32], hi[32], *cause = NULL;
	long long	 v = -1;
	int		 type = config_setting_type(s);

	if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
		if (config_literal(ctx, s) == NULL)
			v = config_setting_get_int64(s);
	} else if (type == CONFIG_TYPE_STRING) {
		if (strlen(config_setting_get_string(s)) > 64)
			cause = xstrdup("too long");
		else if (parse_size_string(config_setting_get_string(s), &v,
		    &cause) != 0)
			v = -1;
	}
	if (v >= k->min && v <= k->max) {
		*bytes = v;
		return (0);
	}
	config_error(ctx, s, "setting '%s': expected a size from %s to %s "
	    "(bytes, or a string like \"64k\" or \"1m\"), got %s%s%s%s",
	    k->name, format_size(k->min, lo, sizeof lo),
	    format_size(k->max, hi, sizeof hi),
	    config_describe(ctx, s, got, sizeof got),
	    cause != NULL ? " (" : "", cause != NULL ? cause : "",
	    cause != NULL ? ")" : "");
	free(cause);
	return (-1);
}

/* Read one of a set of words. */
static int
config_get_enum(struct config_ctx *ctx, const config_setting_t *s,
    const struct config_key *k, int *v)
{
	char		 got[128], list[256];
	const char	*str;
	size_t		 i, o = 0;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		str = config_setting_get_string(s);
		for (i = 0; i < k->nwords; i++) {
			if (strcmp(str, k->words[i]) == 0) {
				*v = (int)i;
				return (0);
			}
		}
	}
	list[0] = '\0';
	for (i = 0; i < k->nwords && o < sizeof list; i++) {
		o += (size_t)snprintf(list + o, sizeof list - o, "%s\"%s\"",
		    i == 0 ? "" : (i + 1 == k->nwords ? " or " : ", "),
		    k->words[i]);
	}
	config_error(ctx, s, "setting '%s': expected %s, got %s", k->name,
	    list, config_describe(ctx, s, got, sizeof got));
	return (-1);
}

/* Read workers: an integer, or "auto" (one per CPU, stored as 0). */
static int
config_get_workers(struct config_ctx *ctx, const config_setting_t *s,
    const struct config_key *k, int *v)
{
	char		 got[128];
	long long	 n;
	int		 type = config_setting_type(s);

	if (type == CONFIG_TYPE_STRING &&
	    strcmp(config_setting_get_string(s), "auto") == 0) {
		*v = 0;
		return (0);
	}
	if ((type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) &&
	    config_literal(ctx, s) == NULL) {
		n = config_setting_get_int64(s);
		if (n >= k->min && n <= k->max) {
			*v = (int)n;
			return (0);
		}
	}
	config_error(ctx, s, "setting '%s': expected an integer from %lld to "
	    "%lld or \"auto\", got %s", k->name, k->min, k->max,
	    config_describe(ctx, s, got, sizeof got));
	return (-1);
}

/* How many strings a "string or array of strings" setting holds; -1: bad. */
static int
config_nelems(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		return (1);
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:
		return (config_setting_length(s));
	}
	return (-1);
}

/* The i-th element of a "string or array of strings" setting. */
static config_setting_t *
config_elem(const config_setting_t *s, int i)
{
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		return (i == 0 ? (config_setting_t *)s : NULL);
	return (config_setting_get_elem(s, (unsigned int)i));
}

/* Parse one known setting into base (a struct config, listener_conf...). */
static int
config_parse_key(struct config_ctx *ctx, config_setting_t *s,
    const struct config_key *k, void *base, enum config_scope scope)
{
	char		*p = (char *)base + k->off;
	long long	 v;
	int		 i;

	switch (k->kind) {
	case CONFIG_KIND_DURATION:
		if (config_get_duration(ctx, s, k, &v) != 0)
			return (-1);
		*(long long *)p = v;
		return (0);
	case CONFIG_KIND_SIZE:
		if (config_get_size(ctx, s, k, &v) != 0)
			return (-1);
		*(size_t *)p = (size_t)v;
		return (0);
	case CONFIG_KIND_LLONG:
		if (config_get_int(ctx, s, k->name, k->min, k->max, &v) != 0)
			return (-1);
		*(long long *)p = v;
		return (0);
	case CONFIG_KIND_INT:
		if (config_get_int(ctx, s, k->name, k->min, k->max, &v) != 0)
			return (-1);
		*(int *)p = (int)v;
		return (0);
	case CONFIG_KIND_BOOL:
		if (config_get_bool(ctx, s, k->name, &i) != 0)
			return (-1);
		*(int *)p = i;
		return (0);
	case CONFIG_KIND_ENUM:
		if (config_get_enum(ctx, s, k, &i) != 0)
			return (-1);
		*(int *)p = i;
		return (0);
	case CONFIG_KIND_WORKERS:
		if (config_get_workers(ctx, s, k, &i) != 0)
			return (-1);
		*(int *)p = i;
		return (0);
	case CONFIG_KIND_STRING:
		return (config_parse_string(ctx, s, k, (char **)p));
	case CONFIG_KIND_NAME:
		return (config_parse_name(ctx, s, base, scope));
	case CONFIG_KIND_LISTEN:
		return (config_parse_listen(ctx, s, base, scope));
	case CONFIG_KIND_BACKENDS:
		return (config_parse_backends(ctx, s, base));
	case CONFIG_KIND_ADDRESS:
		return (config_parse_address(ctx, s, k->name,
		    (struct address *)p));
	case CONFIG_KIND_CIDRS:
		return (config_parse_cidrs(ctx, s, k, base));
	case CONFIG_KIND_HEALTH:
		return (config_parse_health(ctx, s, (struct health_conf *)p));
	case CONFIG_KIND_DEFAULTS:
	case CONFIG_KIND_LISTENERS:
		break;
	}
	return (-1);
}

/* Parse a global string setting: a user or group, a path, an address. */
static int
config_parse_string(struct config_ctx *ctx, config_setting_t *s,
    const struct config_key *k, char **dst)
{
	struct address	 a;
	const char	*str, *what;
	char		 got[128], *cause;

	if (strcmp(k->name, "metrics") == 0)
		what = "an address like \"127.0.0.1:9898\"";
	else if (strcmp(k->name, "user") == 0 ||
	    strcmp(k->name, "group") == 0)
		what = "a name";
	else
		what = "an absolute path";
	if (config_get_string(ctx, s, k->name, what, &str) != 0)
		return (-1);

	if (strcmp(k->name, "metrics") == 0) {
		if (parse_address(str, PARSE_ADDRESS_LISTEN, &a, &cause) != 0) {
			config_error(ctx, s, "setting '%s': expected %s, got "
			    "%s (%s)", k->name, what,
			    config_describe(ctx, s, got, sizeof got), cause);
			free(cause);
			return (-1);
		}
		if (a.kind == ADDRESS_UNIX) {
			/* evhttp serves TCP only. */
			config_error(ctx, s, "setting '%s': expected %s, got "
			    "%s (a unix socket)", k->name, what,
			    config_describe(ctx, s, got, sizeof got));
			address_free(&a);
			return (-1);
		}
		address_free(&a);
	} else if (strcmp(what, "a name") == 0) {
		if (*str == '\0' || strchr(str, ':') != NULL ||
		    strchr(str, '/') != NULL) {
			config_error(ctx, s, "setting '%s': expected %s, got "
			    "%s", k->name, what,
			    config_describe(ctx, s, got, sizeof got));
			return (-1);
		}
	} else if (*str != '/') {
		config_error(ctx, s, "setting '%s': expected %s, got %s",
		    k->name, what, config_describe(ctx, s, got, sizeof got));
		return (-1);
	} else if (strcmp(k->name, "control_socket") == 0 &&
	    strlen(str) >= sizeof ((struct sockaddr_un *)NULL)->sun_path) {
		config_error(ctx, s, "setting '%s': expected a unix socket "
		    "path of at most %zu bytes, got %zu bytes", k->name,
		    sizeof ((struct sockaddr_un *)NULL)->sun_path - 1,
		    strlen(str));
		return (-1);
	}
	free(*dst);
	*dst = xstrdup(str);
	return (0);
}

/* Parse a listener's name: [A-Za-z0-9_.-]+, unique. */
static int
config_parse_name(struct config_ctx *ctx, config_setting_t *s,
    struct listener_conf *lc, enum config_scope scope)
{
	struct listener_conf	*other;
	const char		*str, *p;
	char			 got[128];
	size_t			 i;

	if (scope == CONFIG_SCOPE_DEFAULTS) {
		config_error(ctx, s, "setting 'name' cannot be in defaults: "
		    "each listener needs its own");
		return (-1);
	}
	if (config_get_string(ctx, s, "name", "a name", &str) != 0)
		return (-1);
	for (p = str; *p != '\0'; p++) {
		if (!config_isword((unsigned char)*p) && *p != '.')
			break;
		if (*p == '*')
			break;
	}
	if (*str == '\0' || *p != '\0' || p - str > CONF_MAX_NAME) {
		config_error(ctx, s, "setting 'name': expected 1 to %d "
		    "letters, digits, '_', '.' or '-', got %s", CONF_MAX_NAME,
		    config_describe(ctx, s, got, sizeof got));
		return (-1);
	}
	for (i = 0; i < ctx->conf->nlisteners; i++) {
		other = &ctx->conf->listeners[i];
		if (other->name != NULL && strcmp(other->name, str) == 0) {
			config_error(ctx, s, "setting 'name': \"%s\" is "
			    "already the name of the listener at %s:%d", str,
			    other->file, other->line);
			return (-1);
		}
	}
	free(lc->name);
	lc->name = xstrdup(str);
	return (0);
}

/* Would two listen addresses take the same socket? */
static int
config_listen_conflict(const struct address *a, const struct address *b)
{
	const struct address		*any, *inet;
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	if (address_equal(a, b))
		return (1);
	if (a->kind == ADDRESS_ANY && b->kind == ADDRESS_INET) {
		any = a;
		inet = b;
	} else if (b->kind == ADDRESS_ANY && a->kind == ADDRESS_INET) {
		any = b;
		inet = a;
	} else
		return (0);
	if (any->port != inet->port)
		return (0);
	if (inet->ss.ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)&inet->ss;
		return (sin->sin_addr.s_addr == htonl(INADDR_ANY));
	}
	sin6 = (const struct sockaddr_in6 *)&inet->ss;
	return (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
}

/* Parse listen: an address or an array of them, unique across listeners. */
static int
config_parse_listen(struct config_ctx *ctx, config_setting_t *s,
    struct listener_conf *lc, enum config_scope scope)
{
	static const char	 what[] = "an address like "
	    "\"127.0.0.1:8080\", \"[::1]:8080\", \"*:8080\" or \"unix:/path\"";
	struct listener_conf	*other;
	struct address		*v = NULL, a;
	config_setting_t	*e;
	const char		*str;
	char			 got[128], *cause;
	int			 n, i, before = ctx->errors;
	size_t			 nv = 0, j, k;

	if (scope == CONFIG_SCOPE_DEFAULTS) {
		config_error(ctx, s, "setting 'listen' cannot be in defaults: "
		    "each listener needs its own addresses");
		return (-1);
	}
	if ((n = config_nelems(s)) <= 0 || n > CONF_MAX_ADDRESSES) {
		config_error(ctx, s, "setting 'listen': expected %s, or an "
		    "array of 1 to %d of them, got %s", what,
		    CONF_MAX_ADDRESSES,
		    config_describe(ctx, s, got, sizeof got));
		return (-1);
	}
	v = xcalloc((size_t)n, sizeof *v);
	for (i = 0; i < n; i++) {
		e = config_elem(s, i);
		if (config_get_string(ctx, e, "listen", what, &str) != 0)
			continue;
		if (parse_address(str, PARSE_ADDRESS_LISTEN, &a, &cause) != 0) {
			config_error(ctx, e, "setting 'listen': expected %s, "
			    "got %s (%s)", what,
			    config_describe(ctx, e, got, sizeof got), cause);
			free(cause);
			continue;
		}
		for (j = 0; j < nv; j++) {
			if (config_listen_conflict(&a, &v[j]))
				break;
		}
		if (j != nv) {
			config_error(ctx, e, "setting 'listen': \"%s\" is "
			    "listed twice (as \"%s\")", a.text, v[j].text);
			address_free(&a);
			continue;
		}
		other = NULL;
		for (j = 0; j < ctx->conf->nlisteners && other == NULL; j++) {
			for (k = 0; k < ctx->conf->listeners[j].nlisten; k++) {
				if (config_listen_conflict(&a,
				    &ctx->conf->listeners[j].listen[k])) {
					other = &ctx->conf->listeners[j];
					break;
				}
			}
		}
		if (other != NULL) {
			config_error(ctx, e, "setting 'listen': \"%s\" is "
			    "already a listen address of listener '%s' (%s:%d)",
			    a.text, other->name != NULL ? other->name : "?",
			    other->file, other->line);
			address_free(&a);
			continue;
		}
		v[nv++] = a;
	}
	config_free_listen(lc);
	if (nv == 0)
		free(v);
	else {
		lc->listen = v;
		lc->nlisten = nv;
	}
	return (ctx->errors == before ? 0 : -1);
}

/* Parse one backend address (a string) into a. */
static int
config_parse_address(struct config_ctx *ctx, config_setting_t *s,
    const char *key, struct address *dst)
{
	static const char	 what[] = "an address like "
	    "\"127.0.0.1:9001\", \"[::1]:9001\", \"unix:/path\" or "
	    "\"host.name:9001\"";
	struct address		 a;
	const char		*str;
	char			 got[128], *cause;

	if (config_get_string(ctx, s, key, what, &str) != 0)
		return (-1);
	if (parse_address(str, PARSE_ADDRESS_BACKEND, &a, &cause) != 0) {
		config_error(ctx, s, "setting '%s': expected %s, got %s (%s)",
		    key, what, config_describe(ctx, s, got, sizeof got),
		    cause);
		free(cause);
		return (-1);
	}
	address_free(dst);
	*dst = a;
	return (0);
}

/*
 * Parse backends: an address, an array of addresses, or a list of
 * addresses and groups { address; weight; backup; }.
 */
static int
config_parse_backends(struct config_ctx *ctx, config_setting_t *s,
    struct listener_conf *lc)
{
	const struct config_key	*addr_key = &config_backend_keys[0];
	struct backend_conf	*v, *b;
	config_setting_t	*e;
	char			 got[128];
	int			 n, i, before = ctx->errors, errs;
	size_t			 nv = 0, j;

	if ((n = config_nelems(s)) <= 0 || n > CONF_MAX_ADDRESSES) {
		config_error(ctx, s, "setting 'backends': expected an array "
		    "of 1 to %d addresses, like [ \"127.0.0.1:9001\" ], or a "
		    "list of groups, like ( { address = \"127.0.0.1:9001\"; "
		    "} ), got %s", CONF_MAX_ADDRESSES,
		    config_describe(ctx, s, got, sizeof got));
		return (-1);
	}
	v = xcalloc((size_t)n, sizeof *v);
	for (i = 0; i < n; i++) {
		e = config_elem(s, i);
		b = &v[nv];
		*b = ctx->bdef;
		b->file = config_keep_file(ctx, e);
		b->line = (int)config_setting_source_line(e);
		errs = ctx->errors;
		if (config_setting_type(e) == CONFIG_TYPE_GROUP) {
			config_parse_group(ctx, e, CONFIG_SCOPE_BACKEND,
			    config_backend_keys, nitems(config_backend_keys),
			    b);
			if (b->addr.text == NULL &&
			    config_setting_get_member(e, "address") == NULL) {
				config_error(ctx, e, "setting 'backends': a "
				    "backend group needs an address, like { "
				    "address = \"127.0.0.1:9001\"; }");
			}
		} else if (config_parse_address(ctx, e, "backends",
		    &b->addr) == 0) {
			config_check_unbuilt(ctx, e, CONFIG_SCOPE_BACKEND,
			    addr_key, "backends", b);
		}
		if (b->addr.text == NULL || ctx->errors != errs) {
			address_free(&b->addr);
			continue;
		}
		for (j = 0; j < nv; j++) {
			if (address_equal(&v[j].addr, &b->addr))
				break;
		}
		if (j != nv) {
			config_error(ctx, e, "setting 'backends': \"%s\" is "
			    "listed twice (also at line %d)", b->addr.text,
			    v[j].line);
			address_free(&b->addr);
			continue;
		}
		nv++;
	}
	config_free_backends(lc);
	if (nv == 0)
		free(v);
	else {
		lc->backends = v;
		lc->nbackends = nv;
	}
	return (ctx->errors == before ? 0 : -1);
}

/* The array and count fields behind allow or deny. */
static void
config_cidr_list(struct listener_conf *lc, const struct config_key *k,
    struct cidr ***v, size_t **n)
{
	if (k->off == offsetof(struct listener_conf, allow)) {
		*v = &lc->allow;
		*n = &lc->nallow;
	} else {
		*v = &lc->deny;
		*n = &lc->ndeny;
	}
}

/* Parse allow or deny: an array of addresses or networks. */
static int
config_parse_cidrs(struct config_ctx *ctx, config_setting_t *s,
    const struct config_key *k, struct listener_conf *lc)
{
	static const char	 what[] = "an address or network like "
	    "\"127.0.0.0/8\" or \"::1\"";
	struct cidr		*v = NULL, **dst;
	config_setting_t	*e;
	const char		*str;
	char			 got[128], *cause;
	int			 n, i, before = ctx->errors;
	size_t			 nv = 0, *ndst;

	if ((n = config_nelems(s)) < 0 || n > CONF_MAX_ADDRESSES) {
		config_error(ctx, s, "setting '%s': expected an array of up "
		    "to %d addresses or networks, like [ \"127.0.0.0/8\", "
		    "\"::1\" ], got %s", k->name, CONF_MAX_ADDRESSES,
		    config_describe(ctx, s, got, sizeof got));
		return (-1);
	}
	if (n > 0)
		v = xcalloc((size_t)n, sizeof *v);
	for (i = 0; i < n; i++) {
		e = config_elem(s, i);
		if (config_get_string(ctx, e, k->name, what, &str) != 0)
			continue;
		if (parse_cidr(str, &v[nv], &cause) != 0) {
			config_error(ctx, e, "setting '%s': expected %s, got "
			    "%s (%s)", k->name, what,
			    config_describe(ctx, e, got, sizeof got), cause);
			free(cause);
			continue;
		}
		nv++;
	}
	config_cidr_list(lc, k, &dst, &ndst);
	config_free_cidrs(dst, ndst);
	if (nv == 0)
		free(v);
	else {
		*dst = v;
		*ndst = nv;
	}
	return (ctx->errors == before ? 0 : -1);
}

/* Parse the health_check group; its presence enables the checks. */
static int
config_parse_health(struct config_ctx *ctx, config_setting_t *s,
    struct health_conf *hc)
{
	struct health_conf	 h = { 1, 2 * MS_SEC, MS_SEC, 2, 3 };
	char			 got[128], t[32], iv[32];
	int			 before = ctx->errors;

	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		config_error(ctx, s, "setting 'health_check': expected a group "
		    "like { interval = \"2s\"; timeout = \"1s\"; rise = 2; "
		    "fall = 3; }, got %s",
		    config_describe(ctx, s, got, sizeof got));
		return (-1);
	}
	config_parse_group(ctx, s, CONFIG_SCOPE_HEALTH, config_health_keys,
	    nitems(config_health_keys), &h);
	if (ctx->errors == before && h.timeout_ms > h.interval_ms) {
		config_error(ctx, s, "setting 'health_check': expected a "
		    "timeout no longer than the interval, got timeout %s and "
		    "interval %s", format_duration(h.timeout_ms, t, sizeof t),
		    format_duration(h.interval_ms, iv, sizeof iv));
	}
	if (ctx->errors != before)
		return (-1);
	*hc = h;
	return (0);
}

/* Parse every setting of a group against the keys valid there. */
static void
config_parse_group(struct config_ctx *ctx, config_setting_t *g,
    enum config_scope scope, const struct config_key *keys, size_t nkeys,
    void *base)
{
	const struct config_key	*k;
	config_setting_t	*s;
	int			 i, n = config_setting_length(g);

	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(g, (unsigned int)i);
		k = config_find_key(keys, nkeys, config_setting_name(s));
		if (k == NULL) {
			config_unknown(ctx, s, scope, keys, nkeys);
			continue;
		}
		if (config_parse_key(ctx, s, k, base, scope) == 0)
			config_check_unbuilt(ctx, s, scope, k, k->name, base);
	}
}

/* Parse one listener group over a copy of the defaults. */
static void
config_parse_listener(struct config_ctx *ctx, config_setting_t *g,
    size_t idx)
{
	struct config		*conf = ctx->conf;
	struct listener_conf	 lc;

	config_listener_copy(&lc, &ctx->defaults);
	lc.file = config_keep_file(ctx, g);
	lc.line = (int)config_setting_source_line(g);
	config_parse_group(ctx, g, CONFIG_SCOPE_LISTENER,
	    config_listener_keys, nitems(config_listener_keys), &lc);

	if (config_setting_get_member(g, "name") == NULL) {
		config_error(ctx, g, "listener %zu: setting 'name' is missing "
		    "(expected 1 to %d letters, digits, '_', '.' or '-')",
		    idx + 1, CONF_MAX_NAME);
	}
	if (config_setting_get_member(g, "listen") == NULL) {
		config_error(ctx, g, "listener '%s': setting 'listen' is "
		    "missing (expected an address or an array of addresses)",
		    lc.name != NULL ? lc.name : "?");
	}
	if (config_setting_get_member(g, "backends") == NULL &&
	    lc.nbackends == 0) {
		config_error(ctx, g, "listener '%s': setting 'backends' is "
		    "missing, here and in defaults (expected an array of "
		    "addresses)", lc.name != NULL ? lc.name : "?");
	}
	conf->listeners = xreallocarray(conf->listeners, conf->nlisteners + 1,
	    sizeof *conf->listeners);
	conf->listeners[conf->nlisteners++] = lc;
}

/* Parse the listeners list. */
static void
config_parse_listeners(struct config_ctx *ctx, config_setting_t *s)
{
	config_setting_t	*e;
	char			 got[128];
	int			 i, n;

	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_error(ctx, s, "setting 'listeners': expected a list of "
		    "groups, like ( { name = \"web\"; listen = ...; backends "
		    "= ...; } ), got %s%s",
		    config_describe(ctx, s, got, sizeof got),
		    config_setting_type(s) == CONFIG_TYPE_GROUP ?
		    " (write ( { ... } ) even for one listener)" : "");
		return;
	}
	n = config_setting_length(s);
	if (n == 0 || n > CONF_MAX_LISTENERS) {
		config_error(ctx, s, "setting 'listeners': expected 1 to %d "
		    "listeners, got %d", CONF_MAX_LISTENERS, n);
		return;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned int)i);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
			config_error(ctx, e, "setting 'listeners': expected "
			    "each listener as a group { ... }, got %s",
			    config_describe(ctx, e, got, sizeof got));
			continue;
		}
		config_parse_listener(ctx, e, (size_t)i);
	}
}

/* Parse the top level: global settings, then defaults, then listeners. */
static void
config_parse_root(struct config_ctx *ctx, config_setting_t *root)
{
	const struct config_key	*k;
	config_setting_t	*s, *defaults = NULL, *listeners = NULL;
	char			 got[128];
	int			 i, n = config_setting_length(root);

	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(root, (unsigned int)i);
		k = config_find_key(config_global_keys,
		    nitems(config_global_keys), config_setting_name(s));
		if (k == NULL) {
			config_unknown(ctx, s, CONFIG_SCOPE_GLOBAL,
			    config_global_keys, nitems(config_global_keys));
		} else if (k->kind == CONFIG_KIND_DEFAULTS)
			defaults = s;
		else if (k->kind == CONFIG_KIND_LISTENERS)
			listeners = s;
		else if (config_parse_key(ctx, s, k, ctx->conf,
		    CONFIG_SCOPE_GLOBAL) == 0) {
			config_check_unbuilt(ctx, s, CONFIG_SCOPE_GLOBAL, k,
			    k->name, ctx->conf);
		}
	}

	if (defaults != NULL &&
	    config_setting_type(defaults) != CONFIG_TYPE_GROUP) {
		config_error(ctx, defaults, "setting 'defaults': expected a "
		    "group of listener settings { ... }, got %s",
		    config_describe(ctx, defaults, got, sizeof got));
	} else if (defaults != NULL) {
		config_parse_group(ctx, defaults, CONFIG_SCOPE_DEFAULTS,
		    config_listener_keys, nitems(config_listener_keys),
		    &ctx->defaults);
	}

	if (listeners == NULL) {
		config_error_at(ctx, ctx->path, 1, "setting 'listeners' is "
		    "missing: expected a list of listeners, like listeners = "
		    "( { name = \"web\"; listen = \"127.0.0.1:8080\"; "
		    "backends = [ \"127.0.0.1:9001\" ]; } );");
	} else
		config_parse_listeners(ctx, listeners);
}

/* Does the value of key in cur equal the one in def? */
static int
config_is_default(const struct config_key *k, const void *cur,
    const void *def)
{
	const char	*a = (const char *)cur + k->off;
	const char	*b = (const char *)def + k->off;
	char *const	*sa, *const *sb;

	switch (k->kind) {
	case CONFIG_KIND_DURATION:
	case CONFIG_KIND_LLONG:
		return (*(const long long *)a == *(const long long *)b);
	case CONFIG_KIND_SIZE:
		return (*(const size_t *)a == *(const size_t *)b);
	case CONFIG_KIND_INT:
	case CONFIG_KIND_BOOL:
	case CONFIG_KIND_ENUM:
	case CONFIG_KIND_WORKERS:
		return (*(const int *)a == *(const int *)b);
	case CONFIG_KIND_STRING:
		sa = (char *const *)a;
		sb = (char *const *)b;
		if (*sa == NULL || *sb == NULL)
			return (*sa == *sb);
		return (strcmp(*sa, *sb) == 0);
	case CONFIG_KIND_CIDRS:
		if (k->off == offsetof(struct listener_conf, allow))
			return (((const struct listener_conf *)cur)->nallow ==
			    0);
		return (((const struct listener_conf *)cur)->ndeny == 0);
	case CONFIG_KIND_HEALTH:
		return (((const struct health_conf *)a)->enabled ==
		    ((const struct health_conf *)b)->enabled);
	case CONFIG_KIND_ADDRESS:
		return (((const struct address *)a)->kind != ADDRESS_NAME);
	default:
		break;
	}
	return (1);
}

/* Refuse a value other than the default for a setting not built yet. */
static void
config_check_unbuilt(struct config_ctx *ctx, const config_setting_t *s,
    enum config_scope scope, const struct config_key *k, const char *shown,
    const void *cur)
{
	const struct config_unbuilt	*u;
	const void			*def;
	size_t				 i;

	if (scope == CONFIG_SCOPE_DEFAULTS)
		scope = CONFIG_SCOPE_LISTENER;
	switch (scope) {
	case CONFIG_SCOPE_GLOBAL:
		def = ctx->gdef;
		break;
	case CONFIG_SCOPE_LISTENER:
		def = &ctx->ldef;
		break;
	case CONFIG_SCOPE_BACKEND:
		def = &ctx->bdef;
		break;
	default:
		return;
	}
	for (i = 0; config_unbuilt[i].key != NULL; i++) {
		u = &config_unbuilt[i];
		if (u->scope != scope || strcmp(u->key, k->name) != 0)
			continue;
		if (config_is_default(k, cur, def))
			return;
		if (k->kind == CONFIG_KIND_ADDRESS) {
			config_error(ctx, s, "setting '%s': \"%s\": not built "
			    "yet in this version (only %s)", shown,
			    ((const struct address *)((const char *)cur +
			    k->off))->text, u->accepted);
		} else {
			config_error(ctx, s, "setting '%s': not built yet in "
			    "this version (only %s)", shown, u->accepted);
		}
		return;
	}
}

/* Fill in the built-in global defaults. */
static void
config_global_defaults(struct config *conf)
{
	conf->log_level = LOG_LEVEL_INFO;
	conf->log_connections = LOG_CONNS_CLOSE;
	conf->max_connections = 0;
	conf->shutdown_timeout_ms = 30 * MS_SEC;
	conf->workers = 1;
	conf->resolv_conf = xstrdup(CONFIG_DEFAULT_RESOLV);
}

/* Fill in the built-in listener defaults. */
static void
config_listener_defaults(struct listener_conf *lc)
{
	memset(lc, 0, sizeof *lc);
	lc->connect_timeout_ms = 3 * MS_SEC;
	lc->idle_timeout_ms = 10 * MS_MIN;
	lc->fin_timeout_ms = 60 * MS_SEC;
	lc->resolve_interval_ms = 60 * MS_SEC;
	lc->retries = 3;
	lc->buffer_size = 64 * 1024;
	lc->balance = BALANCE_ROUNDROBIN;
	lc->max_connections = 0;
	lc->max_connections_per_ip = 0;
	lc->send_proxy = SEND_PROXY_NONE;
	lc->accept_proxy = 0;
	lc->backlog = 4096;
	lc->reuseport = 0;
	lc->freebind = 0;
	lc->defer_accept = 0;
	lc->nodelay = 1;
	lc->keepalive = 1;
	lc->splice = 1;
	lc->health.enabled = 0;
	lc->health.interval_ms = 2 * MS_SEC;
	lc->health.timeout_ms = MS_SEC;
	lc->health.rise = 2;
	lc->health.fall = 3;
}

/* Copy a listener's settings, duplicating everything it owns. */
static void
config_listener_copy(struct listener_conf *dst,
    const struct listener_conf *src)
{
	size_t	 i;

	*dst = *src;
	if (src->name != NULL)
		dst->name = xstrdup(src->name);
	if (src->nlisten != 0) {
		dst->listen = xcalloc(src->nlisten, sizeof *dst->listen);
		for (i = 0; i < src->nlisten; i++)
			address_copy(&dst->listen[i], &src->listen[i]);
	}
	if (src->nbackends != 0) {
		dst->backends = xcalloc(src->nbackends,
		    sizeof *dst->backends);
		for (i = 0; i < src->nbackends; i++) {
			dst->backends[i] = src->backends[i];
			address_copy(&dst->backends[i].addr,
			    &src->backends[i].addr);
		}
	}
	if (src->nallow != 0) {
		dst->allow = xcalloc(src->nallow, sizeof *dst->allow);
		for (i = 0; i < src->nallow; i++) {
			dst->allow[i] = src->allow[i];
			dst->allow[i].text = xstrdup(src->allow[i].text);
		}
	}
	if (src->ndeny != 0) {
		dst->deny = xcalloc(src->ndeny, sizeof *dst->deny);
		for (i = 0; i < src->ndeny; i++) {
			dst->deny[i] = src->deny[i];
			dst->deny[i].text = xstrdup(src->deny[i].text);
		}
	}
}

/* Free a listener's listen addresses. */
static void
config_free_listen(struct listener_conf *lc)
{
	size_t	 i;

	for (i = 0; i < lc->nlisten; i++)
		address_free(&lc->listen[i]);
	free(lc->listen);
	lc->listen = NULL;
	lc->nlisten = 0;
}

/* Free a listener's backends. */
static void
config_free_backends(struct listener_conf *lc)
{
	size_t	 i;

	for (i = 0; i < lc->nbackends; i++)
		address_free(&lc->backends[i].addr);
	free(lc->backends);
	lc->backends = NULL;
	lc->nbackends = 0;
}

/* Free an allow or deny list. */
static void
config_free_cidrs(struct cidr **v, size_t *n)
{
	size_t	 i;

	for (i = 0; i < *n; i++)
		cidr_free(&(*v)[i]);
	free(*v);
	*v = NULL;
	*n = 0;
}

/* Free everything a listener owns. */
static void
config_listener_free(struct listener_conf *lc)
{
	free(lc->name);
	lc->name = NULL;
	config_free_listen(lc);
	config_free_backends(lc);
	config_free_cidrs(&lc->allow, &lc->nallow);
	config_free_cidrs(&lc->deny, &lc->ndeny);
}

/* Free a configuration. */
static void
config_free(struct config *conf)
{
	size_t	 i;

	for (i = 0; i < conf->nlisteners; i++)
		config_listener_free(&conf->listeners[i]);
	free(conf->listeners);
	for (i = 0; i < conf->nfiles; i++)
		free(conf->files[i]);
	free(conf->files);
	free(conf->path);
	free(conf->user);
	free(conf->group);
	free(conf->control_socket);
	free(conf->metrics);
	free(conf->resolv_conf);
	free(conf);
}

/* Free what a load needed on the side. */
static void
config_ctx_free(struct config_ctx *ctx)
{
	size_t	 i;

	for (i = 0; i < ctx->nnames; i++)
		free(ctx->names[i]);
	free(ctx->names);
	for (i = 0; i < ctx->nlits; i++) {
		free(ctx->lits[i].file);
		free(ctx->lits[i].name);
		free(ctx->lits[i].text);
	}
	free(ctx->lits);
	free(ctx->dir);
	if (ctx->gdef != NULL)
		config_free(ctx->gdef);
	config_listener_free(&ctx->defaults);
}

/*
 * Load and validate a configuration file. Returns a snapshot with one
 * reference, or NULL with every error added to errs.
 */
struct config *
config_load(const char *path, struct causes *errs)
{
	struct config_ctx	 ctx;
	struct config		*conf;
	config_t		 cf;
	const char		*file;
	char			*cause, *copy;

	if (config_check_path(path, &cause) != 0) {
		causes_add(errs, "%s: %s", path, cause);
		free(cause);
		return (NULL);
	}

	memset(&ctx, 0, sizeof ctx);
	ctx.errs = errs;
	ctx.path = path;
	copy = xstrdup(path);
	ctx.dir = xstrdup(dirname(copy));
	free(copy);
	conf = ctx.conf = xcalloc(1, sizeof *conf);
	conf->refcnt = 1;
	conf->path = xstrdup(path);
	config_global_defaults(conf);
	ctx.gdef = xcalloc(1, sizeof *ctx.gdef);
	config_global_defaults(ctx.gdef);
	config_listener_defaults(&ctx.ldef);
	config_listener_defaults(&ctx.defaults);
	ctx.bdef.weight = 1;

	/* Includes that would make libconfig exit stop the load here. */
	config_scan(&ctx, path, path, 0);
	if (ctx.errors == 0) {
		config_init(&cf);
		config_set_include_dir(&cf, ctx.dir);
		if (config_read_file(&cf, path) != CONFIG_TRUE) {
			file = config_error_file(&cf);
			config_error_at(&ctx, file != NULL ? file : path,
			    config_error_line(&cf), "%s",
			    config_error_text(&cf));
		} else
			config_parse_root(&ctx, config_root_setting(&cf));
		config_destroy(&cf);
	}

	if (ctx.errors != 0) {
		config_free(conf);
		conf = NULL;
	}
	config_ctx_free(&ctx);
	return (conf);
}

/* Take a reference to a configuration. */
struct config *
config_ref(struct config *conf)
{
	__atomic_add_fetch(&conf->refcnt, 1, __ATOMIC_RELAXED);
	return (conf);
}

/* Drop a reference; the last one frees the configuration. */
void
config_unref(struct config *conf)
{
	if (conf == NULL)
		return;
	if (__atomic_sub_fetch(&conf->refcnt, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(conf);
}

/* Print a string in libconfig syntax. */
static void
config_dump_string(FILE *f, const char *s)
{
	int	 c;

	fputc('"', f);
	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Print one setting of base (a struct config, listener_conf...). */
static void
config_dump_key(FILE *f, const char *indent, const struct config_key *k,
    const void *base)
{
	const char	*p = (const char *)base + k->off;
	char		 buf[32];
	const char	*str;
	int		 v;

	switch (k->kind) {
	case CONFIG_KIND_DURATION:
		fprintf(f, "%s%s = \"%s\";\n", indent, k->name,
		    format_duration(*(const long long *)p, buf, sizeof buf));
		break;
	case CONFIG_KIND_SIZE:
		fprintf(f, "%s%s = \"%s\";\n", indent, k->name,
		    format_size((long long)*(const size_t *)p, buf,
		    sizeof buf));
		break;
	case CONFIG_KIND_LLONG:
		fprintf(f, "%s%s = %lld;\n", indent, k->name,
		    *(const long long *)p);
		break;
	case CONFIG_KIND_INT:
		fprintf(f, "%s%s = %d;\n", indent, k->name, *(const int *)p);
		break;
	case CONFIG_KIND_BOOL:
		fprintf(f, "%s%s = %s;\n", indent, k->name,
		    *(const int *)p ? "true" : "false");
		break;
	case CONFIG_KIND_ENUM:
		v = *(const int *)p;
		fprintf(f, "%s%s = \"%s\";\n", indent, k->name,
		    v >= 0 && (size_t)v < k->nwords ? k->words[v] : "?");
		break;
	case CONFIG_KIND_WORKERS:
		v = *(const int *)p;
		if (v == 0)
			fprintf(f, "%s%s = \"auto\";\n", indent, k->name);
		else
			fprintf(f, "%s%s = %d;\n", indent, k->name, v);
		break;
	case CONFIG_KIND_STRING:
	case CONFIG_KIND_NAME:
		if ((str = *(char *const *)p) == NULL) {
			fprintf(f, "%s# %s is not set\n", indent, k->name);
			break;
		}
		fprintf(f, "%s%s = ", indent, k->name);
		config_dump_string(f, str);
		fputs(";\n", f);
		break;
	default:
		break;
	}
}

/* Print one listener with every setting filled in. */
static void
config_dump_listener(FILE *f, const struct listener_conf *lc)
{
	const struct config_key		*k;
	const struct backend_conf	*b;
	const struct health_conf	*h = &lc->health;
	const struct cidr		*cv;
	char				 t1[32], t2[32];
	size_t				 i, j, n;

	fputs("  {\n", f);
	for (i = 0; i < nitems(config_listener_keys); i++) {
		k = &config_listener_keys[i];
		switch (k->kind) {
		case CONFIG_KIND_LISTEN:
			fputs("    listen = [ ", f);
			for (j = 0; j < lc->nlisten; j++) {
				if (j != 0)
					fputs(", ", f);
				config_dump_string(f, lc->listen[j].text);
			}
			fputs(" ];\n", f);
			break;
		case CONFIG_KIND_BACKENDS:
			fputs("    backends = (\n", f);
			for (j = 0; j < lc->nbackends; j++) {
				b = &lc->backends[j];
				fputs("      { address = ", f);
				config_dump_string(f, b->addr.text);
				fprintf(f, "; weight = %d; backup = %s; }%s\n",
				    b->weight, b->backup ? "true" : "false",
				    j + 1 == lc->nbackends ? "" : ",");
			}
			fputs("    );\n", f);
			break;
		case CONFIG_KIND_CIDRS:
			cv = k->off == offsetof(struct listener_conf, allow) ?
			    lc->allow : lc->deny;
			n = k->off == offsetof(struct listener_conf, allow) ?
			    lc->nallow : lc->ndeny;
			fprintf(f, "    %s = [ ", k->name);
			for (j = 0; j < n; j++) {
				if (j != 0)
					fputs(", ", f);
				config_dump_string(f, cv[j].text);
			}
			fputs(n == 0 ? "];\n" : " ];\n", f);
			break;
		case CONFIG_KIND_HEALTH:
			if (!h->enabled) {
				fputs("    # health_check is not set (no "
				    "active checks)\n", f);
				break;
			}
			fprintf(f, "    health_check = { interval = \"%s\"; "
			    "timeout = \"%s\"; rise = %d; fall = %d; };\n",
			    format_duration(h->interval_ms, t1, sizeof t1),
			    format_duration(h->timeout_ms, t2, sizeof t2),
			    h->rise, h->fall);
			break;
		default:
			config_dump_key(f, "    ", k, lc);
			break;
		}
	}
	fputs("  }", f);
}

/*
 * Print the effective configuration in libconfig syntax, every default
 * filled in: config_load reads it back to the same configuration.
 */
void
config_dump(const struct config *conf, FILE *f)
{
	const struct config_key	*k;
	size_t			 i;

	fputs("# acceptd: the effective configuration, every default filled "
	    "in.\n\n", f);
	for (i = 0; i < nitems(config_global_keys); i++) {
		k = &config_global_keys[i];
		if (k->kind != CONFIG_KIND_DEFAULTS &&
		    k->kind != CONFIG_KIND_LISTENERS)
			config_dump_key(f, "", k, conf);
	}
	fputs("\nlisteners = (\n", f);
	for (i = 0; i < conf->nlisteners; i++) {
		config_dump_listener(f, &conf->listeners[i]);
		fputs(i + 1 == conf->nlisteners ? "\n" : ",\n", f);
	}
	fputs(");\n", f);
}

/* Write all of buf, going on after short writes. */
static int
config_write_all(int fd, const char *buf, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return (-1);
		buf += n;
		len -= (size_t)n;
	}
	return (0);
}

/*
 * In the child: load the file and send the result as 'R', each cause with
 * its NUL, then 'E'. Anything else (libconfig calling exit()) is noticed
 * by the parent.
 */
static __dead void
config_child(const char *path, int fd)
{
	struct causes	 c = { NULL, 0 };
	struct config	*conf;
	size_t		 i;
	int		 failed = 0;

	conf = config_load(path, &c);
	config_unref(conf);
	if (config_write_all(fd, "R", 1) != 0)
		failed = 1;
	for (i = 0; i < c.n && !failed; i++) {
		if (config_write_all(fd, c.v[i], strlen(c.v[i]) + 1) != 0)
			failed = 1;
	}
	if (!failed && config_write_all(fd, "E", 1) != 0)
		failed = 1;
	causes_free(&c);
	_exit(failed ? 1 : 0);
}

/* Close every descriptor from fd on. */
static void
config_close_from(int fd)
{
	long	 max, i;

	if (syscall(SYS_close_range, (unsigned int)fd, ~0U, 0) == 0)
		return;
	if ((max = sysconf(_SC_OPEN_MAX)) < 0 || max > 65536)
		max = 65536;
	for (i = fd; i < max; i++)
		close((int)i);
}

/* Append to a report, up to CONFIG_CHILD_MAX_REPORT bytes. */
static void
config_report_add(struct config_report *r, const char *buf, size_t len)
{
	if (len > CONFIG_CHILD_MAX_REPORT - r->len)
		len = CONFIG_CHILD_MAX_REPORT - r->len;
	if (len == 0)
		return;
	r->buf = xreallocarray(r->buf, r->len + len + 1, 1);
	memcpy(r->buf + r->len, buf, len);
	r->len += len;
	r->buf[r->len] = '\0';
}

/*
 * Read the child's report and its stderr until both close, for at most
 * CONFIG_CHILD_TIMEOUT seconds; then kill it. Returns -1 on timeout.
 */
static int
config_child_collect(pid_t pid, int outfd, int errfd,
    struct config_report *out, struct config_report *err)
{
	struct pollfd	 pfd[2];
	struct timespec	 now, end;
	char		 buf[4096];
	ssize_t		 n;
	long long	 left;
	int		 i, open_fds = 2;

	pfd[0].fd = outfd;
	pfd[1].fd = errfd;
	pfd[0].events = pfd[1].events = POLLIN;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += CONFIG_CHILD_TIMEOUT;
	while (open_fds > 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = (end.tv_sec - now.tv_sec) * 1000LL +
		    (end.tv_nsec - now.tv_nsec) / 1000000;
		if (left <= 0) {
			kill(pid, SIGKILL);
			return (-1);
		}
		if (poll(pfd, 2, (int)left) == -1) {
			if (errno == EINTR)
				continue;
			kill(pid, SIGKILL);
			return (-1);
		}
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd == -1 || pfd[i].revents == 0)
				continue;
			n = read(pfd[i].fd, buf, sizeof buf);
			if (n == -1 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				pfd[i].fd = -1;
				open_fds--;
				continue;
			}
			config_report_add(i == 0 ? out : err, buf, (size_t)n);
		}
	}
	return (0);
}

/* Make a pipe whose ends are closed on exec. */
static int
config_pipe(int fds[2])
{
	if (pipe(fds) != 0)
		return (-1);
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	return (0);
}

/*
 * Check a configuration file in a child process, since libconfig 1.5
 * calls exit() on some inputs. Returns 0 if it is valid, or -1 with every
 * error (or why the child failed) added to errs. A child that does not
 * finish in time is killed and the check made once more: a child forked
 * while another thread held a lock it then needs (an allocator's without
 * fork handlers, as in sanitizer runtimes) hangs by accident, not because
 * of the file.
 */
int
config_check_in_child(const char *path, struct causes *errs)
{
	struct causes	 first = { NULL, 0 };
	size_t		 i;
	int		 r, timedout;

	r = config_check_once(path, &first, &timedout);
	if (r == -1 && timedout) {
		causes_free(&first);
		return (config_check_once(path, errs, &timedout));
	}
	for (i = 0; i < first.n; i++)
		causes_add(errs, "%s", first.v[i]);
	causes_free(&first);
	return (r);
}

/* One check in a child; *timedout says whether it had to be killed. */
static int
config_check_once(const char *path, struct causes *errs, int *timedout_out)
{
	struct config_report	 out = { NULL, 0 }, err = { NULL, 0 };
	const char		*p, *end, *nl;
	pid_t			 pid;
	int			 outp[2], errp[2], status = 0, timedout, rc;
	int			 n = 0;

	*timedout_out = 0;
	if (config_pipe(outp) != 0) {
		causes_add(errs, "%s: cannot check the configuration: %s",
		    path, strerror(errno));
		return (-1);
	}
	if (config_pipe(errp) != 0) {
		causes_add(errs, "%s: cannot check the configuration: %s",
		    path, strerror(errno));
		close(outp[0]);
		close(outp[1]);
		return (-1);
	}
	/* The child must not write out what the parent has buffered. */
	fflush(NULL);
	if ((pid = fork()) == -1) {
		causes_add(errs, "%s: cannot check the configuration: %s",
		    path, strerror(errno));
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
		return (-1);
	}
	if (pid == 0) {
		/*
		 * Keep only the two pipes: a copy of a connection's socket
		 * held here would delay the FIN of its close in the parent.
		 */
		if (dup2(errp[1], STDERR_FILENO) == -1 ||
		    dup2(outp[1], STDERR_FILENO + 1) == -1)
			_exit(1);
		config_close_from(STDERR_FILENO + 2);
		config_child(path, STDERR_FILENO + 1);
	}
	close(outp[1]);
	close(errp[1]);
	timedout = config_child_collect(pid, outp[0], errp[0], &out, &err);
	*timedout_out = (timedout != 0);
	close(outp[0]);
	close(errp[0]);
	while ((rc = waitpid(pid, &status, 0)) == -1 && errno == EINTR)
		/* nothing */;

	if (timedout == 0 && rc == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0 && out.len >= 2 && out.buf[0] == 'R' &&
	    out.buf[out.len - 1] == 'E') {
		end = out.buf + out.len - 1;
		for (p = out.buf + 1; p < end; p += strlen(p) + 1) {
			causes_add(errs, "%s", p);
			n++;
		}
		free(out.buf);
		free(err.buf);
		return (n == 0 ? 0 : -1);
	}

	if (timedout != 0) {
		causes_add(errs, "%s: configuration could not be read (the "
		    "parser did not finish within %d seconds)", path,
		    CONFIG_CHILD_TIMEOUT);
	} else if (rc == pid && WIFSIGNALED(status)) {
		causes_add(errs, "%s: configuration could not be read (the "
		    "parser was killed by signal %d)", path, WTERMSIG(status));
	} else if (rc == pid && WIFEXITED(status)) {
		causes_add(errs, "%s: configuration could not be read (the "
		    "parser exited with status %d)", path,
		    WEXITSTATUS(status));
	} else {
		causes_add(errs, "%s: configuration could not be read (the "
		    "parser's exit status was lost)", path);
	}
	if (err.len > 0) {
		nl = strchr(err.buf, '\n');
		causes_add(errs, "%s: the parser said: %.*s", path,
		    nl != NULL ? (int)(nl - err.buf) : (int)err.len, err.buf);
	}
	free(out.buf);
	free(err.buf);
	return (-1);
}
