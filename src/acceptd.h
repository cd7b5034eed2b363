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
void	 log_set_journal_sink(int (*)(const char *const *, size_t));
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
int	 sockaddr_equal(const struct sockaddr *, socklen_t,
	     const struct sockaddr *, socklen_t);
const char *format_duration(long long, char *, size_t);
const char *format_size(long long, char *, size_t);
const char *format_sockaddr(const struct sockaddr *, socklen_t, char *, size_t);

/* parse_address flags. */
#define PARSE_ADDRESS_LISTEN	0x1	/* allow "*:port"; refuse names */
#define PARSE_ADDRESS_BACKEND	0x2	/* allow names; refuse "*" */

/* acl.c: allow/deny, and connections per client address (pure). */
struct acl_sources;
int	 acl_check(const struct listener_conf *, const struct sockaddr *);
int	 acl_subject(const struct sockaddr *);
struct acl_sources *acl_sources_new(void);
void	 acl_sources_free(struct acl_sources *);
int	 acl_sources_take(struct acl_sources *, const struct sockaddr *,
	     long long);
void	 acl_sources_release(struct acl_sources *, const struct sockaddr *);
long long acl_sources_count(struct acl_sources *, const struct sockaddr *);
size_t	 acl_sources_size(struct acl_sources *);

/* proxyproto.c: PROXY protocol v1/v2 headers (pure). */
#define PROXYPROTO_V1_MAX	107		/* v1 line, CRLF included */
#define PROXYPROTO_MAX		(16 + 65535)	/* longest v2 header */
#define PROXYPROTO_ENCODE_MAX	108		/* what encode writes */
struct proxyproto {
	int			 version;	/* 1 or 2 */
	int			 local;		/* no address carried */
	struct sockaddr_storage	 src;		/* the client */
	socklen_t		 srclen;
	struct sockaddr_storage	 dst;		/* where it connected */
	socklen_t		 dstlen;
};
int	 proxyproto_encode(enum send_proxy, const struct sockaddr *,
	     const struct sockaddr *, uint8_t *, size_t);
int	 proxyproto_decode(const uint8_t *, size_t, struct proxyproto *,
	     size_t *, const char **);

/* balance.c: the balancing algorithms, pure (no libevent, no locks). */
#define BALANCE_MAX_PEERS	1024	/* endpoints of one pool */
struct balance_peer {
	int			 weight;	/* 1..256 */
	int			 current;	/* smooth weighted round robin */
	unsigned long long	 active;	/* open connections (leastconn) */
	uint64_t		 hash;		/* of its address (source) */
	int			 usable;	/* may take this connection */
};
uint64_t balance_hash(const void *, size_t);
int	 balance_client_key(const struct sockaddr *, socklen_t, uint64_t *);
int	 balance_source(const struct balance_peer *, size_t, uint64_t);
int	 balance_roundrobin(struct balance_peer *, size_t);
int	 balance_leastconn(struct balance_peer *, size_t);
int	 balance_first(const struct balance_peer *, size_t);

/* config.c */
struct config *config_load(const char *, struct causes *);
struct config *config_ref(struct config *);
void	 config_unref(struct config *);
void	 config_dump(const struct config *, FILE *);
int	 config_check_in_child(const char *, struct causes *);

/* systemd.c (systemd-none.c without libsystemd): every sd_* call. */
void	 systemd_ready(const char *);
void	 systemd_reloading(void);
void	 systemd_stopping(const char *);
void	 systemd_status(const char *, ...) printflike(1, 2);
int	 systemd_watchdog_usec(unsigned long long *);
void	 systemd_watchdog_ping(void);
int	 systemd_journal_send(const char *const *, size_t);
int	 systemd_listen_fds(int *, char ***, char **);
int	 systemd_is_listening(int);
int	 systemd_fdstore(int, const char *);
void	 systemd_fdstore_remove(const char *);

/* privileges.c: the user and group to become once the sockets are bound. */
struct privileges {
	int			 drop;		/* 0: nothing to change */
	char			*user;		/* NULL: group only */
	uid_t			 uid;
	gid_t			 gid;
	gid_t			*groups;	/* supplementary */
	int			 ngroups;
};
int	 privileges_lookup(const struct config *, struct privileges *,
	     char **);
void	 privileges_free(struct privileges *);
int	 privileges_drop(const struct privileges *, char **);

/* reload.c: read a configuration file off the event loop. */
struct reload;
struct reload *reload_start(const char *, char **);
int	 reload_fd(const struct reload *);
struct config *reload_finish(struct reload *, struct causes *);

/*
 * daemon.c: run the proxy with a loaded configuration (nonzero: the log
 * level was given on the command line and outlives reloads); returns the
 * exit status.
 */
int	 daemon_run(struct config *, int);

/*
 * The relay core below only names libevent types through pointers, so
 * this header still needs no event2 include.
 */
struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct session;
struct worker;
struct workers;

/*
 * limits.c: connection counts against the caps, shared by every thread.
 * One struct limits per listener name, kept across reloads.
 */
struct limits {
	TAILQ_ENTRY(limits)	 entry;
	char			*name;		/* listener name */
	int			 refcnt;	/* under the registry lock */
	long long		 active;	/* atomic */
	struct acl_sources	*sources;	/* max_connections_per_ip */
};
struct limits *limits_get(const char *);
struct limits *limits_ref(struct limits *);
void	 limits_unref(struct limits *);
void	 limits_open(struct limits *);
void	 limits_close(struct limits *);
int	 limits_full(const struct limits *, const struct listener_conf *);
long long limits_active_count(void);
long long limits_cap(void);
long long limits_allowed(const struct config *, unsigned long long *,
	     long long *, long long *, long long *);
void	 limits_configure(const struct config *);
int	 limits_source_take(struct limits *, const struct sockaddr *,
	     long long);
void	 limits_source_release(struct limits *, const struct sockaddr *);
void	 limits_init(struct event_base *);
void	 limits_shutdown(void);
int	 limits_log_refused(void);

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
	struct workers		*workers;
	struct config		*conf;
	const struct listener_conf *lc;
	struct backend_pool	*pool;

	/* As bound: a reload keeps the socket while these stay the same. */
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 reuseport;
	int			 freebind;
	int			 defer_accept;
	int			 backlog;	/* applied in place */
	const struct listener_conf *next_lc;	/* reload: where it goes */
	int			 fresh;		/* reload: bound by it */
	int			 adopted;	/* LISTENER_FROM_* */

	/* Connection caps (limits.c): counts of the listener's name. */
	struct limits		*limits;
	int			 capped;	/* off: at max_connections */
	int			 counted;	/* in listener.c's list */
	TAILQ_ENTRY(listener)	 all;
};
TAILQ_HEAD(listener_list, listener);
#define LISTENER_BOUND		0	/* bound by acceptd */
#define LISTENER_FROM_UNIT	1	/* from a socket unit */
#define LISTENER_FROM_STORE	2	/* from the fd store */

int	 listener_open(struct listener_list *, struct event_base *,
	     const struct listener_conf *, const struct address *, char **);
int	 listener_reload_open(struct listener_list *, struct listener_list *,
	     struct listener_list *, struct event_base *,
	     const struct listener_conf *, const struct address *, char **);
void	 listener_reload_commit(struct listener_list *, struct listener_list *,
	     struct listener_list *);
void	 listener_reload_abort(struct listener_list *, struct listener_list *,
	     struct listener_list *, struct event_base *);
void	 listener_attach(struct listener *, struct workers *, struct config *,
	     const struct listener_conf *, struct backend_pool *);
void	 listener_enable(struct listener *);
void	 listener_resume(struct listener *);
void	 listener_free(struct listener *);

/*
 * activation.c: sockets handed over by systemd at startup (socket unit
 * or fd store), and the fd store kept in step with the listening sockets.
 */
int	 activation_init(const struct config *, char **);
int	 activation_take(const char *, const struct sockaddr *, socklen_t,
	     int *);
int	 activation_finish(char **);
void	 activation_store(struct listener_list *);
void	 activation_free(void);

/* relay.c */
#define RELAY_PIPES_MAX		32	/* per worker, whatever the limit */
#define RELAY_READS_MAX		4	/* reads per wake-up, for fairness */
#define RELAY_SLACK		128	/* room for a PROXY header in front */
#define RELAY_BULK		16384	/* a read this big: splice from now */
#define RELAY_BULK_END		4096	/* a splice this small: copy again */
/* Bytes in flight one way: in a buffer or in a pipe, never both. */
struct relay_dir {
	char			*buf;		/* NULL when empty */
	size_t			 bufcap;
	size_t			 off;
	size_t			 len;
	int			 pipe[2];	/* -1: none */
	size_t			 inpipe;
	unsigned long long	 nin;		/* read from the source */
	unsigned long long	 nout;		/* written to the sink */
	int			 nosplice;	/* splice refused: copy */
	int			 bulk;		/* big reads: splice them */
};
struct relay_pool;
struct relay_pool *relay_pool_new(void);
void	 relay_pool_free(struct relay_pool *);
long long relay_pipe_fds_open(void);
void	 relay_set_pipes_max(int);
void	 relay_dir_init(struct relay_dir *);
size_t	 relay_dir_pending(const struct relay_dir *);
size_t	 relay_dir_room(const struct relay_dir *, size_t);
ssize_t	 relay_dir_read(struct relay_pool *, struct relay_dir *, int, size_t,
	     size_t, int);
ssize_t	 relay_dir_write(struct relay_dir *, int);
int	 relay_dir_prepend(struct relay_pool *, struct relay_dir *,
	     const void *, size_t, size_t);
void	 relay_dir_idle(struct relay_pool *, struct relay_dir *);
void	 relay_dir_free(struct relay_pool *, struct relay_dir *);

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
	END_DENIED,
	END_LIMIT,
	END_BAD_PROXY_HEADER,
	END_SHUTDOWN,
	END_KILLED,		/* acceptctl kill */
	END_ERROR,
	END_MAX
};
const char *session_end_name(enum end_reason);
void	 session_accept(struct worker *, struct config *,
	     const struct listener_conf *, struct backend_pool *,
	     struct limits *, int, const struct sockaddr *, socklen_t);
void	 session_close(struct session *, enum end_reason);
/* What show conns prints of an open connection. */
struct session_info {
	unsigned long long	 id;		/* id= of its log lines */
	const char		*listener;
	char			 client[256];
	char			 backend[256];	/* "-" until connected */
	const char		*state;
	long long		 age_ms;
	unsigned long long	 bytes_in;	/* from the client, so far */
	unsigned long long	 bytes_out;	/* to the client, so far */
};
void	 session_walk(struct worker *,
	     void (*)(const struct session_info *, void *), void *);
int	 session_kill(struct worker *, unsigned long long);

/*
 * backend.c: the backends of one listener (a pool), how a connection picks
 * one, and their health. A struct backend is one endpoint: a literal
 * address, or one address of a host name. Pools of the same listener share
 * endpoints across reloads, per address; their state is under one lock.
 */
#define BACKEND_BACKOFF_MIN_MS	1000	/* passive: the first back-off */
#define BACKEND_BACKOFF_MAX_MS	30000	/* passive: it doubles up to this */
#define BACKEND_TRIED_INLINE	4
struct backend_name;
struct backend_set;
struct health_probe;
struct resolve_req;
struct backend {
	int			 refcnt;	/* under the backend lock */
	unsigned long long	 id;		/* unique in the process */
	char			*listener;	/* listener name, for logs */
	char			*text;		/* address, for logs */
	char			*name;		/* "host:port" it came from */
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;

	/* Health and counters, under the backend lock. */
	int			 up;		/* as last logged */
	int			 check_down;	/* health_check says down */
	int			 check_ok;	/* passed checks in a row */
	int			 check_failed;	/* failed checks in a row */
	long long		 retry_ms;	/* passive: down until; 0: not */
	long long		 backoff_ms;	/* passive: current back-off */
	const void		*trial;		/* tries it after a back-off */
	unsigned long long	 active;	/* connections using it */
	unsigned long long	 total;		/* connections that chose it */
	unsigned long long	 failures;	/* failed connects */

	struct health_probe	*probe;		/* health.c, main loop only */

	/* Runtime control (acceptctl) and show backends. */
	int			 admin_down;	/* no new connections (drain) */
	long long		 last_check_ms;	/* wall clock; 0: none yet */
	int			 last_check_ok;
};
/* The endpoints one connection tried already (zeroed to start). */
struct backend_tried {
	unsigned long long	 inline_ids[BACKEND_TRIED_INLINE];
	unsigned long long	*ids;
	size_t			 n;
	size_t			 cap;
};
struct backend_pool {
	int			 refcnt;	/* atomic */
	struct config		*conf;		/* keeps conf alive */
	const struct listener_conf *lc;
	struct backend_set	*set;		/* under the backend lock */
	struct backend_name	*names;		/* entries with a host name */
	size_t			 nnames;
	struct event_base	*base;		/* main loop, once started */
	struct event		*resolve_timer;
	struct stats_listener	*stats;		/* its listener's counters */
};
struct backend_pool *backend_pool_new(struct config *,
	     const struct listener_conf *);
struct backend_pool *backend_pool_ref(struct backend_pool *);
void	 backend_pool_unref(struct backend_pool *);
int	 backend_pool_start(struct backend_pool *, struct event_base *);
void	 backend_pool_stop(struct backend_pool *);
void	 backend_pool_inherit(struct backend_pool *, struct backend_pool *);
void	 backend_pool_refresh(struct backend_pool *);
void	 backend_tried_free(struct backend_tried *);
struct backend *backend_pool_choose(struct backend_pool *,
	     const struct sockaddr *, socklen_t, struct backend_tried *,
	     const void *);
void	 backend_connected(struct backend *, const void *);
void	 backend_failed(struct backend *, int, int, const void *);
void	 backend_release(struct backend *, const void *);
void	 backend_check_done(struct backend_pool *, struct backend *, int,
	     const char *);
size_t	 backend_pool_down(struct backend_pool *);
void	 backend_pool_walk(struct backend_pool *,
	     void (*)(const struct backend *, int, void *), void *);
size_t	 backend_pool_admin(struct backend_pool *, const char *, int);

/* health.c: active TCP checks of a pool's endpoints, on the main loop. */
void	 health_start(struct backend_pool *, struct backend *,
	     struct event_base *);
void	 health_stop(struct backend *);

/*
 * resolve.c: backend host names, resolved with evdns on the main loop;
 * the last good answer for each name is kept.
 */
struct resolve_job;
struct resolve_job *resolve_config(struct event_base *, struct config *,
	     void (*)(void *, struct causes *), void *);
void	 resolve_job_cancel(struct resolve_job *);
struct resolve_req *resolve_host(const char *, void (*)(void *, int),
	     void *);
void	 resolve_cancel(struct resolve_req *);
size_t	 resolve_lookup(const char *, const struct sockaddr_storage **);
void	 resolve_shutdown(struct event_base *);

/*
 * worker.c: event loops (one per thread with workers > 1), each with its
 * sessions and their counters; the main loop accepts and hands over.
 */
#define WORKERS_MAX		1024
TAILQ_HEAD(session_list, session);
struct worker_thread;
struct workers;
struct worker {
	struct event_base	*base;
	struct session_list	 sessions;	/* its thread only */
	unsigned long long	 active;	/* atomic */
	unsigned long long	 queued;	/* atomic: handed, not started */
	unsigned long long	 accepted;	/* atomic */
	unsigned long long	 ends[END_MAX];	/* atomic */
	unsigned long long	 bytes_in;	/* atomic; from clients */
	unsigned long long	 bytes_out;	/* atomic; to clients */
	unsigned long long	 beats;		/* atomic; heartbeats */
	int			 reserve_fd;	/* atomic; spare, for a backend */
	void			(*closed_cb)(struct worker *, void *);
	void			*closed_arg;
	struct workers		*group;
	size_t			 index;
	struct worker_thread	*thread;	/* NULL: on the main loop */
	struct event		*heartbeat;
	struct relay_pool	*relay;		/* its buffers and pipes */
};
/* Every worker of the daemon. */
struct workers {
	struct worker		**w;
	size_t			 n;
	struct event_base	*main_base;
	struct event		*closed_ev;	/* main loop: sessions closed */
	int			 closed_pending; /* atomic */
	void			(*closed_cb)(void *);
	void			*closed_arg;
	size_t			 next;		/* round for ties */
	int			 reserve_fd;	/* spare of the accepting side */
	unsigned long long	*seen;		/* heartbeats at the last tick */
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
void	 worker_drain_base(struct event_base *);
void	 worker_call(struct worker *, void (*)(struct worker *, void *),
	     void *);
unsigned long long worker_beats(const struct worker *);
size_t	 workers_count(const struct config *);
struct workers *workers_new(struct event_base *, size_t);
int	 workers_start(struct workers *, char **);
void	 workers_free(struct workers *);
void	 workers_set_closed_cb(struct workers *, void (*)(void *), void *);
void	 workers_accept(struct workers *, struct config *,
	     const struct listener_conf *, struct backend_pool *,
	     struct limits *, int, const struct sockaddr *, socklen_t);
int	 workers_has_reserve(struct workers *);
unsigned long long workers_active(const struct workers *);
unsigned long long workers_accepted(const struct workers *);
void	 workers_close_all(struct workers *, enum end_reason);
int	 workers_heartbeat(struct workers *, long long);
int	 workers_alive(struct workers *, size_t *);

/*
 * heartbeat.c: did every loop beat since the last look (pure)? Updates
 * seen; *stale gets the first that did not.
 */
int	 heartbeat_fresh(const unsigned long long *, unsigned long long *,
	     size_t, size_t *);

/*
 * stats.c: the counters of each listener (by name, kept across reloads,
 * updated by every worker without a lock), and the snapshot that
 * metrics.c and control.c read on the main loop.
 */
#define STATS_BUCKETS		14	/* connect duration histogram */
struct stats_listener;
/* What the daemon runs now, for a snapshot (main loop). */
struct stats_view {
	struct config		*conf;
	struct listener_list	*listeners;
	struct backend_pool	**pools;	/* running configuration's */
	size_t			 npools;
	struct worker		**workers;
	size_t			 nworkers;
	unsigned long long	 reloads_ok;
	unsigned long long	 reloads_failed;
};
/* The daemon's side: its view, and a reload as SIGHUP does it. */
struct stats_source {
	void			(*view)(void *, struct stats_view *);
	/* -1: stopping; else *seq is the reload whose end answers. */
	int			(*reload)(void *, unsigned long long *);
	void			*arg;
};
struct stats_listener_snap {
	char			*name;
	int			 configured;
	size_t			 sockets;	/* listening sockets */
	size_t			 capped;	/* of them, at a cap */
	size_t			 paused;	/* of them, in a back-off */
	long long		 active;
	unsigned long long	 ends[END_MAX];
	unsigned long long	 bytes_in;
	unsigned long long	 bytes_out;
	unsigned long long	 buckets[STATS_BUCKETS + 1]; /* per bucket */
	unsigned long long	 connect_count;
	unsigned long long	 connect_sum_us;
	unsigned long long	 cap_pauses;
	unsigned long long	 backoffs;
};
struct stats_backend_snap {
	char			*listener;
	char			*address;
	char			*name;		/* host name entry, or NULL */
	int			 backup;
	int			 up;
	int			 admin_down;
	int			 checked;	/* health_check is on */
	long long		 last_check_ms;	/* wall clock; 0: none yet */
	int			 last_check_ok;
	unsigned long long	 active;
	unsigned long long	 total;
	unsigned long long	 failures;
};
struct stats_worker_snap {
	unsigned long long	 active;
	unsigned long long	 accepted;
};
struct stats_snapshot {
	long long		 now_ms;	/* wall clock */
	long long		 start_ms;	/* wall clock */
	long long		 active;
	long long		 cap;
	unsigned long long	 reloads_ok;
	unsigned long long	 reloads_failed;
	unsigned long long	 log_dropped;
	struct stats_listener_snap *listeners;
	size_t			 nlisteners;
	struct stats_backend_snap *backends;
	size_t			 nbackends;
	size_t			 backends_cap;
	struct stats_worker_snap *workers;	/* one per worker */
	size_t			 nworkers;
	int			 oom;
};
long long stats_now_ms(void);
long long stats_now_us(void);
void	 stats_init(void);
void	 stats_shutdown(void);
struct stats_listener *stats_listener_get(const char *);
void	 stats_opened(struct stats_listener *);
void	 stats_connected(struct stats_listener *, long long);
void	 stats_bytes(struct stats_listener *, unsigned long long,
	     unsigned long long);
void	 stats_closed(struct stats_listener *, enum end_reason);
void	 stats_cap_paused(struct stats_listener *);
void	 stats_backoff(struct stats_listener *);
double	 stats_bucket_bound(size_t);
struct stats_snapshot *stats_snapshot(const struct stats_source *);
void	 stats_snapshot_free(struct stats_snapshot *);
void	 stats_conns(const struct stats_source *,
	     void (*)(const struct session_info *, void *), void *);
int	 stats_kill(const struct stats_source *, unsigned long long);
size_t	 stats_backend_admin(const struct stats_source *, const char *,
	     const char *, int, int *);

/* metrics.c: GET /metrics (Prometheus text format) with evhttp. */
struct metrics;
struct metrics *metrics_start(struct event_base *, const char *,
	     const struct stats_source *, char **);
void	 metrics_free(struct metrics *);
const char *metrics_address(const struct metrics *);

/* control.c: the control socket that acceptctl(8) talks to. */
struct control;
struct control *control_start(struct event_base *, const char *, uid_t,
	     gid_t, const struct stats_source *, char **);
void	 control_free(struct control *);
const char *control_path(const struct control *);
void	 control_retire(struct control *);
void	 control_reload_done(struct control *, unsigned long long,
	     const struct causes *);

#endif /* ACCEPTD_H */
