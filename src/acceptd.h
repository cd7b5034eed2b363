/*
 * acceptd: a TCP accept-proxy daemon.
 *
 * The one program header: every shared struct, the tunables, and the
 * prototypes of each file under a comment naming it, in file order.
 * config.c and parse.c must stay free of libevent (unit tests link them
 * alone), so nothing in the configuration part below uses event2 types.
 */
#ifndef ACCEPTD_H
#define ACCEPTD_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef __dead
#define __dead __attribute__((__noreturn__))
#endif
#define printflike(a, b) __attribute__((__format__(printf, a, b)))
#ifndef nitems
#define nitems(a) (sizeof(a) / sizeof((a)[0]))
#endif

/* Limits of the configuration language. */
#define CONF_MAX_STRING		4096	/* longest string setting accepted */
#define CONF_MAX_NAME		64	/* longest listener name */
#define CONF_MAX_LISTENERS	1024
#define CONF_MAX_ADDRESSES	256	/* per listen/backends list */

/* Log levels, most severe first (log_level setting). */
enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_NOTICE,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG
};

/* log_connections setting. */
enum log_conns {
	LOG_CONNS_NONE,
	LOG_CONNS_CLOSE,
	LOG_CONNS_ALL
};

enum balance {
	BALANCE_ROUNDROBIN,
	BALANCE_LEASTCONN,
	BALANCE_SOURCE,
	BALANCE_FIRST
};

enum send_proxy {
	SEND_PROXY_NONE,
	SEND_PROXY_V1,
	SEND_PROXY_V2
};

/* What an address string was: "1.2.3.4:80", "[::1]:80", "*:80",
 * "unix:/path" or "host.name:80". */
enum address_kind {
	ADDRESS_INET,		/* literal IPv4 or IPv6; ss holds it */
	ADDRESS_ANY,		/* "*:port": both families, wildcard */
	ADDRESS_UNIX,		/* "unix:/path"; ss holds a sockaddr_un */
	ADDRESS_NAME		/* host name, resolved later (host, port) */
};

struct address {
	enum address_kind	 kind;
	char			*text;		/* as written, for logs */
	char			*host;		/* ADDRESS_NAME only */
	uint16_t		 port;		/* INET, ANY, NAME */
	struct sockaddr_storage	 ss;		/* INET, UNIX */
	socklen_t		 sslen;
};

/* An allow/deny entry. IPv4 is stored as AF_INET with 4 bytes used. */
struct cidr {
	int			 family;	/* AF_INET or AF_INET6 */
	uint8_t			 addr[16];	/* network, host bits zero */
	int			 prefix;
	char			*text;
};

struct backend_conf {
	struct address		 addr;
	int			 weight;	/* 1..256 */
	int			 backup;
	const char		*file;		/* where it was written */
	int			 line;
};

struct health_conf {
	int			 enabled;
	long long		 interval_ms;
	long long		 timeout_ms;
	int			 rise;
	int			 fall;
};

/* One listeners entry with the defaults group applied. */
struct listener_conf {
	char			*name;
	const char		*file;
	int			 line;

	struct address		*listen;
	size_t			 nlisten;
	struct backend_conf	*backends;
	size_t			 nbackends;

	long long		 connect_timeout_ms;
	long long		 idle_timeout_ms;	/* 0 = never */
	long long		 fin_timeout_ms;	/* 0 = never */
	long long		 resolve_interval_ms;
	int			 retries;
	size_t			 buffer_size;
	enum balance		 balance;

	long long		 max_connections;	/* 0 = no listener cap */
	long long		 max_connections_per_ip;	/* 0 = unlimited */
	struct cidr		*allow;
	size_t			 nallow;
	struct cidr		*deny;
	size_t			 ndeny;
	enum send_proxy		 send_proxy;
	int			 accept_proxy;

	int			 backlog;
	int			 reuseport;
	int			 freebind;
	int			 defer_accept;
	int			 nodelay;
	int			 keepalive;
	int			 splice;
	struct health_conf	 health;
};

/*
 * A validated, immutable configuration snapshot. Reload builds a new one
 * and swaps the pointer; sessions hold a reference to the snapshot they
 * started with (config_ref/config_unref, safe across threads).
 */
struct config {
	int			 refcnt;	/* atomic */
	char			*path;		/* main file, as given */
	char			**files;	/* every file read (includes) */
	size_t			 nfiles;

	char			*user;		/* NULL: unset */
	char			*group;
	enum log_level		 log_level;
	enum log_conns		 log_connections;
	long long		 max_connections;	/* 0: from RLIMIT_NOFILE */
	long long		 shutdown_timeout_ms;
	int			 workers;		/* 0: "auto" */
	char			*control_socket;	/* NULL: none */
	char			*metrics;		/* NULL: none */
	char			*resolv_conf;

	struct listener_conf	*listeners;
	size_t			 nlisteners;
};

/* A list of error messages, collected instead of stopping at the first. */
struct causes {
	char			**v;
	size_t			 n;
};

/* xmalloc.c: allocation that never returns NULL (startup and config only). */
void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
int	 xasprintf(char **, const char *, ...) printflike(2, 3);
int	 xvasprintf(char **, const char *, va_list) printflike(2, 0);

/* log.c */
void	 log_init(enum log_level, const char *);
void	 log_setlevel(enum log_level);
enum log_level log_getlevel(void);
int	 log_enabled(enum log_level);
void	 log_start_writer(void);
void	 log_stop_writer(void);
unsigned long long log_dropped(void);
int	 log_journal(void);
void	 log_errorx(const char *, ...) printflike(1, 2);
void	 log_warn(const char *, ...) printflike(1, 2);
void	 log_warnx(const char *, ...) printflike(1, 2);
void	 log_notice(const char *, ...) printflike(1, 2);
void	 log_info(const char *, ...) printflike(1, 2);
void	 log_debug(const char *, ...) printflike(1, 2);
void	 log_conn(const char *, const char *const *, size_t);
__dead void fatal(const char *, ...) printflike(1, 2);
__dead void fatalx(const char *, ...) printflike(1, 2);

/* causes.c */
void	 causes_add(struct causes *, const char *, ...) printflike(2, 3);
void	 causes_print(const struct causes *, FILE *);
void	 causes_free(struct causes *);

/* parse.c: pure parsers, each returning 0 or -1 with *cause set. */
int	 parse_duration_string(const char *, long long *, char **);
int	 parse_size_string(const char *, long long *, char **);
int	 parse_address(const char *, int, struct address *, char **);
void	 address_free(struct address *);
void	 address_copy(struct address *, const struct address *);
int	 address_equal(const struct address *, const struct address *);
int	 parse_cidr(const char *, struct cidr *, char **);
void	 cidr_free(struct cidr *);
int	 cidr_match(const struct cidr *, const struct sockaddr *);
const char *format_duration(long long, char *, size_t);
const char *format_size(long long, char *, size_t);
const char *format_sockaddr(const struct sockaddr *, socklen_t, char *, size_t);

/* parse_address flags. */
#define PARSE_ADDRESS_LISTEN	0x1	/* allow "*:port"; refuse names */
#define PARSE_ADDRESS_BACKEND	0x2	/* allow names; refuse "*" */

/* config.c */
struct config *config_load(const char *, struct causes *);
struct config *config_ref(struct config *);
void	 config_unref(struct config *);
void	 config_dump(const struct config *, FILE *);
int	 config_check_in_child(const char *, struct causes *);

/* systemd.c (systemd-none.c without libsystemd): every sd_* call. */
void	 systemd_ready(const char *);
void	 systemd_reloading(void);
void	 systemd_stopping(void);
void	 systemd_status(const char *, ...) printflike(1, 2);
int	 systemd_watchdog_usec(unsigned long long *);
void	 systemd_watchdog_ping(void);

/* daemon.c: run the proxy with a loaded configuration; returns the exit status. */
int	 daemon_run(struct config *);

/*
 * The relay core below only names libevent types through pointers, so
 * this header still needs no event2 include.
 */
struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct session;

/* listener.c: one listening socket (one address of one listener). */
struct listener {
	TAILQ_ENTRY(listener)	 entry;
	char			*key;		/* address + bind options */
	char			*text;		/* address, for logs */
	int			 family;
	struct evconnlistener	*evl;
	struct event		*backoff;	/* accept error back-off */
	int			 enabled;	/* wanted on */
	int			 paused;	/* in back-off */
	long long		 last_error;	/* monotonic s, 0: none */

	/* Where accepted connections go; replaced on reload. */
	struct worker		*worker;
	struct config		*conf;
	const struct listener_conf *lc;
	struct backend_pool	*pool;
};
TAILQ_HEAD(listener_list, listener);

int	 listener_open(struct listener_list *, struct event_base *,
	     const struct listener_conf *, const struct address *, char **);
void	 listener_attach(struct listener *, struct worker *, struct config *,
	     const struct listener_conf *, struct backend_pool *);
void	 listener_enable(struct listener *);
void	 listener_resume(struct listener *);
void	 listener_free(struct listener *);

/* session.c */
enum end_reason {
	END_CLIENT_FIN,
	END_BACKEND_FIN,
	END_CLIENT_RESET,
	END_BACKEND_RESET,
	END_IDLE_TIMEOUT,
	END_FIN_TIMEOUT,
	END_CONNECT_FAILED,
	END_NO_BACKEND,
	END_SHUTDOWN,
	END_ERROR,
	END_MAX
};
const char *session_end_name(enum end_reason);
void	 session_accept(struct worker *, struct config *,
	     const struct listener_conf *, struct backend_pool *, int,
	     const struct sockaddr *, socklen_t);
void	 session_close(struct session *, enum end_reason);

/* backend.c: the backends of one listener, in round-robin order. */
struct backend {
	const struct backend_conf *conf;
	const char		*text;		/* address, for logs */
};
struct backend_pool {
	int			 refcnt;	/* atomic */
	struct config		*conf;		/* keeps conf alive */
	const struct listener_conf *lc;
	struct backend		*backends;
	size_t			 nbackends;
	unsigned int		 next;		/* round-robin, atomic */
};
struct backend_pool *backend_pool_new(struct config *,
	     const struct listener_conf *);
struct backend_pool *backend_pool_ref(struct backend_pool *);
void	 backend_pool_unref(struct backend_pool *);
size_t	 backend_pool_first(struct backend_pool *);
struct backend *backend_pool_get(struct backend_pool *, size_t, int);

/* worker.c: one event loop, its sessions and their counters. */
TAILQ_HEAD(session_list, session);
struct worker {
	struct event_base	*base;
	struct session_list	 sessions;
	unsigned long long	 active;
	unsigned long long	 accepted;
	unsigned long long	 ends[END_MAX];
	unsigned long long	 bytes_in;	/* from clients */
	unsigned long long	 bytes_out;	/* to clients */
	int			 reserve_fd;	/* spare, for a backend */
	void			(*closed_cb)(struct worker *, void *);
	void			*closed_arg;
};
struct worker *worker_new(struct event_base *);
void	 worker_free(struct worker *);
int	 worker_use_reserve(struct worker *);
int	 worker_has_reserve(struct worker *);
void	 worker_set_closed_cb(struct worker *,
	     void (*)(struct worker *, void *), void *);
void	 worker_session_opened(struct worker *);
void	 worker_session_closed(struct worker *, enum end_reason,
	     unsigned long long, unsigned long long);
void	 worker_close_all(struct worker *, enum end_reason);

#endif /* ACCEPTD_H */
