/*
 * Unit tests for config.c: invalid files with their line numbers and
 * messages, valid files with their values, the -T round trip, includes,
 * and the check in a child process.
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "acceptd.h"

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif

/* A valid listener, lines 1 to 5; EXTRA goes on line 6. */
#define LISTENER_HEAD \
	"listeners = (\n" \
	"  {\n" \
	"    name = \"web\";\n" \
	"    listen = \"127.0.0.1:8080\";\n" \
	"    backends = [ \"127.0.0.1:9001\" ];\n"
#define LISTENER(extra) LISTENER_HEAD extra "  }\n);\n"
#define MINIMAL LISTENER("")
/* The same without listen, or without backends, keeping the lines. */
#define NO_LISTEN(extra) \
	"listeners = (\n" \
	"  {\n" \
	"    name = \"web\";\n" \
	"    # listen below\n" \
	"    backends = [ \"127.0.0.1:9001\" ];\n" extra "  }\n);\n"
#define NO_BACKENDS(extra) \
	"listeners = (\n" \
	"  {\n" \
	"    name = \"web\";\n" \
	"    listen = \"127.0.0.1:8080\";\n" \
	"    # backends below\n" extra "  }\n);\n"

/* An invalid configuration and what must be reported. */
struct bad_config {
	const char	*name;		/* the behaviour, as the test's name */
	const char	*text;
	int		 line;		/* of the first error */
	size_t		 count;		/* errors expected; 0: any */
	const char	*words[4];	/* in the first error */
};

/* Each test's temporary directory. */
struct fixture {
	const struct bad_config	*bad;
	char			 dir[64];
	char			 path[PATH_MAX];
};

static const struct bad_config bad_configs[] = {
	/* Unknown settings, with the closest name when there is one. */
	{ "unknown_top_level_setting_suggests_closest",
	    "log_levle = \"info\";\n" MINIMAL, 1, 1,
	    { "unknown setting 'log_levle'", "did you mean 'log_level'?" } },
	{ "unknown_listener_setting_suggests_closest",
	    LISTENER("    conect_timeout = \"3s\";\n"), 6, 1,
	    { "unknown setting 'conect_timeout' in a listener",
	    "did you mean 'connect_timeout'?" } },
	{ "unknown_defaults_setting_suggests_closest",
	    "defaults = {\n  retires = 3;\n};\n" MINIMAL, 2, 1,
	    { "unknown setting 'retires' in defaults",
	    "did you mean 'retries'?" } },
	{ "unknown_setting_far_from_any_name",
	    "xyzzy = 1;\n" MINIMAL, 1, 1,
	    { "unknown setting 'xyzzy' at the top level" } },
	{ "listener_setting_at_top_level_says_where_it_goes",
	    "retries = 3;\n" MINIMAL, 1, 1,
	    { "setting 'retries'", "listener setting", "'defaults'" } },
	{ "misspelled_listener_setting_at_top_level_suggests_it",
	    "conect_timeout = 3;\n" MINIMAL, 1, 1,
	    { "did you mean 'connect_timeout'", "listener setting" } },
	{ "global_setting_in_listener_says_where_it_goes",
	    LISTENER("    workers = 1;\n"), 6, 1,
	    { "setting 'workers'", "global setting", "top level" } },
	{ "unknown_backend_group_key_suggests_address",
	    NO_BACKENDS("    backends = "
	    "( { adress = \"127.0.0.1:9001\"; } );\n"),
	    6, 2, { "unknown setting 'adress' in a backend group",
	    "did you mean 'address'?" } },
	{ "unknown_health_check_key_suggests_closest",
	    LISTENER("    health_check = { fal = 3; };\n"), 6, 1,
	    { "unknown setting 'fal' in health_check",
	    "did you mean 'fall'?" } },

	/* Integers: libconfig 1.5 truncates, we do not. */
	{ "integer_5000000000_in_int_setting_is_rejected",
	    LISTENER("    retries = 5000000000;\n"), 6, 1,
	    { "setting 'retries'", "expected an integer from 0 to 100",
	    "got 5000000000" } },
	{ "integer_truncating_to_a_valid_value_is_rejected",
	    LISTENER("    retries = 4294967299;\n"), 6, 1,
	    { "setting 'retries'", "got 4294967299" } },
	{ "hex_integer_beyond_int_is_rejected",
	    LISTENER("    backlog = 0x100000400;\n"), 6, 1,
	    { "setting 'backlog'", "expected an integer from 1 to 65535",
	    "got 0x100000400" } },
	{ "integer_beyond_long_long_is_rejected",
	    LISTENER("    backlog = 99999999999999999999;\n"), 6, 1,
	    { "setting 'backlog'", "got 99999999999999999999" } },
	{ "huge_integer_duration_is_rejected",
	    LISTENER("    idle_timeout = 4294967396;\n"), 6, 1,
	    { "setting 'idle_timeout'", "expected a duration",
	    "got 4294967396" } },
	{ "negative_retries_are_rejected",
	    LISTENER("    retries = -1;\n"), 6, 1,
	    { "setting 'retries'", "from 0 to 100", "got -1" } },
	{ "retries_above_100_are_rejected",
	    LISTENER("    retries = 101;\n"), 6, 1,
	    { "setting 'retries'", "got 101" } },
	{ "backlog_zero_is_rejected",
	    LISTENER("    backlog = 0;\n"), 6, 1,
	    { "setting 'backlog'", "from 1 to 65535", "got 0" } },
	{ "float_for_integer_names_the_type",
	    LISTENER("    retries = 1.5;\n"), 6, 1,
	    { "setting 'retries'", "expected an integer", "got a float" } },
	{ "string_for_integer_names_the_type",
	    LISTENER("    retries = \"3\";\n"), 6, 1,
	    { "setting 'retries'", "expected an integer", "got \"3\"" } },
	{ "integer_for_boolean_names_the_type",
	    LISTENER("    nodelay = 1;\n"), 6, 1,
	    { "setting 'nodelay'", "expected true or false", "got 1" } },
	{ "array_for_boolean_names_the_type",
	    LISTENER("    splice = [ true ];\n"), 6, 1,
	    { "setting 'splice'", "expected true or false", "got an array" } },

	/* Durations and sizes. */
	{ "duration_with_unknown_unit_is_rejected",
	    LISTENER("    connect_timeout = \"3x\";\n"), 6, 1,
	    { "setting 'connect_timeout'", "expected a duration",
	    "unknown unit \"x\"" } },
	{ "duration_string_without_unit_is_rejected",
	    LISTENER("    fin_timeout = \"30\";\n"), 6, 1,
	    { "setting 'fin_timeout'", "expected a duration", "got \"30\"" } },
	{ "negative_duration_is_rejected",
	    LISTENER("    idle_timeout = -5;\n"), 6, 1,
	    { "setting 'idle_timeout'", "from 0s to 168h", "got -5" } },
	{ "zero_connect_timeout_is_rejected",
	    LISTENER("    connect_timeout = 0;\n"), 6, 1,
	    { "setting 'connect_timeout'", "from 1ms to 1h", "got 0" } },
	{ "duration_above_maximum_is_rejected",
	    LISTENER("    connect_timeout = \"2h\";\n"), 6, 1,
	    { "setting 'connect_timeout'", "to 1h", "got \"2h\"" } },
	{ "duration_float_is_rejected",
	    LISTENER("    fin_timeout = 1.5;\n"), 6, 1,
	    { "setting 'fin_timeout'", "got a float" } },
	{ "size_below_minimum_is_rejected",
	    LISTENER("    buffer_size = 100;\n"), 6, 1,
	    { "setting 'buffer_size'", "expected a size from 4k to 64m",
	    "got 100" } },
	{ "size_with_unknown_unit_is_rejected",
	    LISTENER("    buffer_size = \"1g\";\n"), 6, 1,
	    { "setting 'buffer_size'", "unknown unit \"g\"" } },
	{ "size_overflowing_is_rejected",
	    LISTENER("    buffer_size = \"99999999999999999999k\";\n"), 6, 1,
	    { "setting 'buffer_size'", "too large" } },

	/* Words. */
	{ "unknown_balance_lists_the_choices",
	    LISTENER("    balance = \"random\";\n"), 6, 1,
	    { "setting 'balance'", "\"roundrobin\", \"leastconn\", \"source\" "
	    "or \"first\"", "got \"random\"" } },
	{ "unknown_log_level_lists_the_choices",
	    "log_level = \"loud\";\n" MINIMAL, 1, 1,
	    { "setting 'log_level'", "\"error\"", "got \"loud\"" } },
	{ "unknown_log_connections_lists_the_choices",
	    "log_connections = true;\n" MINIMAL, 1, 1,
	    { "setting 'log_connections'", "\"none\", \"close\" or \"all\"",
	    "got true" } },
	{ "unknown_send_proxy_lists_the_choices",
	    LISTENER("    send_proxy = \"v3\";\n"), 6, 1,
	    { "setting 'send_proxy'", "\"v1\"", "got \"v3\"" } },
	{ "workers_string_other_than_auto_is_rejected",
	    "workers = \"many\";\n" MINIMAL, 1, 1,
	    { "setting 'workers'", "from 1 to 1024 or \"auto\"",
	    "got \"many\"" } },
	{ "workers_above_maximum_is_rejected",
	    "workers = 5000;\n" MINIMAL, 1, 1,
	    { "setting 'workers'", "got 5000" } },

	/* The shape of listeners. */
	{ "missing_listeners_is_an_error",
	    "log_level = \"info\";\n", 1, 1,
	    { "setting 'listeners' is missing", "expected a list" } },
	{ "empty_file_is_an_error", "", 1, 1,
	    { "setting 'listeners' is missing" } },
	{ "empty_listeners_list_is_an_error",
	    "log_level = \"info\";\nlisteners = ( );\n", 2, 1,
	    { "setting 'listeners'", "expected 1 to", "got 0" } },
	{ "listeners_as_group_is_an_error",
	    "listeners = {\n  name = \"web\";\n};\n", 1, 1,
	    { "setting 'listeners'", "expected a list of groups",
	    "got a group" } },
	{ "listener_as_string_is_an_error",
	    "listeners = (\n  \"web\" );\n", 2, 1,
	    { "setting 'listeners'", "as a group", "got \"web\"" } },
	{ "listener_without_listen_is_an_error",
	    "listeners = (\n  {\n    name = \"web\";\n    backends = "
	    "\"127.0.0.1:9001\";\n  }\n);\n", 2, 1,
	    { "listener 'web'", "'listen' is missing" } },
	{ "listener_without_backends_is_an_error",
	    "listeners = (\n  {\n    name = \"web\";\n    listen = "
	    "\"127.0.0.1:8080\";\n  }\n);\n", 2, 1,
	    { "listener 'web'", "'backends' is missing" } },
	{ "listener_without_name_is_an_error",
	    "listeners = (\n  {\n    listen = \"127.0.0.1:8080\";\n"
	    "    backends = \"127.0.0.1:9001\";\n  }\n);\n", 2, 1,
	    { "listener 1", "'name' is missing" } },
	{ "listener_name_with_a_space_is_rejected",
	    "listeners = (\n  {\n    name = \"my web\";\n    listen = "
	    "\"127.0.0.1:8080\";\n    backends = \"127.0.0.1:9001\";\n"
	    "  }\n);\n", 3, 1,
	    { "setting 'name'", "letters, digits", "got \"my web\"" } },
	{ "listener_name_of_65_characters_is_rejected",
	    "listeners = (\n  {\n    name = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";\n    listen = "
	    "\"127.0.0.1:8080\";\n    backends = \"127.0.0.1:9001\";\n"
	    "  }\n);\n", 3, 1,
	    { "setting 'name'", "expected 1 to 64" } },
	{ "duplicate_listener_names_are_rejected",
	    "listeners = (\n"
	    "  { name = \"web\"; listen = \"127.0.0.1:1\"; "
	    "backends = \"127.0.0.1:2\"; },\n"
	    "  { name = \"web\"; listen = \"127.0.0.1:3\"; "
	    "backends = \"127.0.0.1:2\"; }\n);\n", 3, 1,
	    { "setting 'name'", "\"web\" is already the name",
	    "acceptd.conf:2" } },
	{ "listen_address_used_by_two_listeners_is_rejected",
	    "listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:1\"; "
	    "backends = \"127.0.0.1:2\"; },\n"
	    "  { name = \"b\";\n    listen = [ \"127.0.0.1:3\", "
	    "\"127.0.0.1:01\" ];\n    backends = \"127.0.0.1:2\"; }\n);\n",
	    4, 1,
	    { "setting 'listen'", "\"127.0.0.1:01\"",
	    "already a listen address of listener 'a'" } },
	{ "listen_address_twice_in_one_listener_is_rejected",
	    NO_LISTEN("    listen = [ \"[::1]:80\", \"[0::1]:80\" ];\n"), 6, 1,
	    { "setting 'listen'", "\"[0::1]:80\" is listed twice" } },
	{ "wildcard_and_unspecified_on_same_port_conflict",
	    "listeners = (\n  {\n    name = \"web\";\n    listen = "
	    "[ \"*:80\", \"0.0.0.0:80\" ];\n    backends = "
	    "\"127.0.0.1:9001\";\n  }\n);\n", 4, 1,
	    { "setting 'listen'", "\"0.0.0.0:80\" is listed twice",
	    "\"*:80\"" } },
	{ "listen_host_name_is_rejected",
	    "listeners = (\n  {\n    name = \"web\";\n    listen = "
	    "\"localhost:80\";\n    backends = \"127.0.0.1:9001\";\n"
	    "  }\n);\n", 4, 1,
	    { "setting 'listen'", "expected an address", "host name" } },
	{ "listen_port_out_of_range_is_rejected",
	    "listeners = (\n  {\n    name = \"web\";\n    listen = "
	    "\"127.0.0.1:65536\";\n    backends = \"127.0.0.1:9001\";\n"
	    "  }\n);\n", 4, 1,
	    { "setting 'listen'", "ports are 1 to 65535" } },
	{ "listen_empty_array_is_rejected",
	    "listeners = (\n  {\n    name = \"web\";\n    listen = [];\n"
	    "    backends = \"127.0.0.1:9001\";\n  }\n);\n", 4, 1,
	    { "setting 'listen'", "array of 1 to", "got an empty array" } },
	{ "listen_number_is_rejected",
	    "listeners = (\n  {\n    name = \"web\";\n    listen = [ 80 ];\n"
	    "    backends = \"127.0.0.1:9001\";\n  }\n);\n", 4, 1,
	    { "setting 'listen'", "expected an address", "got 80" } },
	{ "listen_ipv6_without_brackets_is_rejected",
	    "listeners = (\n  {\n    name = \"web\";\n    listen = "
	    "\"::1:80\";\n    backends = \"127.0.0.1:9001\";\n  }\n);\n",
	    4, 1, { "setting 'listen'", "brackets" } },
	{ "listen_relative_unix_path_is_rejected",
	    "listeners = (\n  {\n    name = \"web\";\n    listen = "
	    "\"unix:run/web.sock\";\n    backends = \"127.0.0.1:9001\";\n"
	    "  }\n);\n", 4, 1, { "setting 'listen'", "not absolute" } },

	/* Backends. */
	{ "backend_wildcard_is_rejected",
	    NO_BACKENDS("    backends = [ \"*:80\" ];\n"), 6, 1,
	    { "setting 'backends'", "only allowed in listen" } },
	{ "backend_unspecified_address_is_rejected",
	    NO_BACKENDS("    backends = [ \"0.0.0.0:80\" ];\n"), 6, 1,
	    { "setting 'backends'", "cannot be a backend" } },
	{ "empty_backends_is_rejected",
	    NO_BACKENDS("    backends = [];\n"), 6, 1,
	    { "setting 'backends'", "expected an array of 1 to",
	    "got an empty array" } },
	{ "backends_as_group_is_rejected",
	    NO_BACKENDS("    backends = "
	    "{ address = \"127.0.0.1:1\"; };\n"), 6, 1,
	    { "setting 'backends'", "list of groups", "got a group" } },
	{ "backend_group_without_address_is_rejected",
	    NO_BACKENDS("    backends = ( { weight = 1; } );\n"), 6, 1,
	    { "setting 'backends'", "needs an address" } },
	{ "backend_listed_twice_is_rejected",
	    NO_BACKENDS("    backends = "
	    "[ \"127.0.0.1:1\", \"127.0.0.1:1\" ];\n"),
	    6, 1, { "setting 'backends'", "listed twice" } },
	{ "backend_weight_out_of_range_is_rejected",
	    NO_BACKENDS("    backends = ( { address = \"127.0.0.1:1\"; "
	    "weight = 300; } );\n"), 6, 1,
	    { "setting 'weight'", "from 1 to 256", "got 300" } },

	/* Settings not built yet: refused unless at their default. */
	{ "allow_with_host_bits_is_rejected",
	    LISTENER("    allow = [ \"10.0.0.1/8\" ];\n"), 6, 1,
	    { "setting 'allow'", "host bits are set",
	    "the network is 10.0.0.0/8" } },
	{ "deny_with_bad_prefix_is_rejected",
	    LISTENER("    deny = [ \"10.0.0.0/33\" ];\n"), 6, 1,
	    { "setting 'deny'", "prefix /33" } },
	{ "accept_proxy_as_string_is_rejected",
	    LISTENER("    accept_proxy = \"yes\";\n"), 6, 1,
	    { "setting 'accept_proxy'", "got \"yes\"" } },
	{ "health_check_rise_zero_is_rejected",
	    LISTENER("    health_check = { rise = 0; };\n"), 6, 1,
	    { "setting 'rise'", "from 1 to 100", "got 0" } },
	{ "health_timeout_longer_than_interval_is_rejected",
	    LISTENER("    health_check = { interval = \"1s\"; timeout = "
	    "\"2s\"; };\n"), 6, 1,
	    { "setting 'health_check'", "timeout 2s", "interval 1s" } },
	{ "negative_max_connections_per_ip_is_rejected",
	    LISTENER("    max_connections_per_ip = -1;\n"), 6, 1,
	    { "setting 'max_connections_per_ip'", "got -1" } },
	{ "huge_global_max_connections_is_rejected",
	    "max_connections = 5000000000;\n" MINIMAL, 1, 1,
	    { "setting 'max_connections'", "5000000000" } },
	{ "metrics_on_unix_socket_is_rejected",
	    "metrics = \"unix:/run/acceptd/metrics.sock\";\n" MINIMAL, 1, 1,
	    { "setting 'metrics'", "expected an address", "a unix socket" } },
	{ "control_socket_relative_path_is_rejected",
	    "control_socket = \"run/control.sock\";\n" MINIMAL, 1, 1,
	    { "setting 'control_socket'", "expected an absolute path" } },
	{ "metrics_bad_address_is_rejected",
	    "metrics = \"localhost\";\n" MINIMAL, 1, 1,
	    { "setting 'metrics'", "expected an address", "missing port" } },
	{ "empty_user_is_rejected",
	    "user = \"\";\n" MINIMAL, 1, 1,
	    { "setting 'user'", "expected a name", "got \"\"" } },

	/* The defaults group. */
	{ "name_in_defaults_is_rejected",
	    "defaults = {\n  name = \"x\";\n};\n" MINIMAL, 2, 1,
	    { "setting 'name' cannot be in defaults" } },
	{ "listen_in_defaults_is_rejected",
	    "defaults = {\n  listen = \"*:80\";\n};\n" MINIMAL, 2, 1,
	    { "setting 'listen' cannot be in defaults" } },
	{ "defaults_not_a_group_is_rejected",
	    "defaults = 1;\n" MINIMAL, 1, 1,
	    { "setting 'defaults'", "expected a group", "got 1" } },
	{ "global_setting_in_defaults_says_where_it_goes",
	    "defaults = {\n  log_level = \"info\";\n};\n" MINIMAL, 2, 1,
	    { "setting 'log_level'", "cannot be set in defaults" } },

	/* Strings, syntax and hostile input. */
	{ "string_longer_than_the_maximum_is_rejected", NULL, 3, 1,
	    { "setting 'name'", "at most 4096 characters",
	    "string of 5000 characters" } },
	{ "syntax_error_reports_its_line",
	    "log_level = \"info\";\n\nretries = ;\n" MINIMAL, 3, 1,
	    { "syntax error" } },
	{ "duplicate_setting_is_a_syntax_error",
	    "log_level = \"info\";\nlog_level = \"debug\";\n" MINIMAL, 2, 1,
	    { "duplicate setting" } },
	{ "unterminated_string_is_a_syntax_error",
	    "log_level = \"info;\n" MINIMAL, 0, 1, { "acceptd.conf:" } },
	{ "binary_garbage_is_a_syntax_error",
	    "\x7f" "ELF\x02\x01\x01\xff\xfe\x01\x02garbage\x80\x81;\n", 1, 1,
	    { "syntax error" } },
	{ "deep_nesting_is_refused", NULL, 1, 1,
	    { "memory exhausted" } },
	{ "include_of_missing_file_reports_its_line",
	    "log_level = \"info\";\n@include \"missing.conf\"\n" MINIMAL, 2, 1,
	    { "@include \"missing.conf\"", "No such file or directory" } },
	{ "three_errors_are_all_reported",
	    "log_level = \"loud\";\n"
	    "listeners = (\n  {\n    name = \"web\";\n"
	    "    listen = \"127.0.0.1:8080\";\n"
	    "    backends = [ \"127.0.0.1:9001\" ];\n"
	    "    retries = 500;\n"
	    "    buffer_size = \"1x\";\n  }\n);\n", 1, 3,
	    { "setting 'log_level'" } }
};

const char	*__lsan_default_suppressions(void);
const char	*__lsan_default_options(void);
static int	 setup(void **);
static int	 teardown(void **);
static int	 remove_entry(const char *, const struct stat *, int,
		     struct FTW *);
static const char *write_file(struct fixture *, const char *,
		     const char *, size_t);
static char	*bad_text(const struct bad_config *, size_t *);
static void	 expect_errors(const char *, const struct causes *,
		     const struct bad_config *);
static void	 dump_to_file(const struct config *, const char *);
static char	*read_whole(const char *);
static struct config *load_ok(const char *);

/*
 * libconfig 1.5 leaks the string it was scanning when a syntax error stops
 * it inside one (unterminated_string_is_a_syntax_error): that allocation
 * is libconfig's own, so LeakSanitizer is told to let it pass.
 */
const char *
__lsan_default_suppressions(void)
{
	return ("leak:strbuf_append\n");
}

/* Keep cmocka's summary the last thing printed. */
const char *
__lsan_default_options(void)
{
	return ("print_suppressions=0");
}

/* Make a private directory for one test. */
static int
setup(void **state)
{
	struct fixture	*f;

	f = calloc(1, sizeof *f);
	if (f == NULL)
		return (-1);
	f->bad = *state;
	snprintf(f->dir, sizeof f->dir, "/tmp/acceptd-test-config.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return (-1);
	}
	*state = f;
	return (0);
}

/* Remove one file or directory (nftw callback). */
static int
remove_entry(const char *path, const struct stat *sb, int type,
    struct FTW *ftw)
{
	return (remove(path));
}

/* Remove the test's directory and everything in it. */
static int
teardown(void **state)
{
	struct fixture	*f = *state;
	int		 rc;

	rc = nftw(f->dir, remove_entry, 16, FTW_DEPTH|FTW_PHYS);
	free(f);
	return (rc);
}

/* Write a file in the test's directory and return its path. */
static const char *
write_file(struct fixture *f, const char *name, const char *text,
    size_t len)
{
	FILE	*fp;

	snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
	fp = fopen(f->path, "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	return (f->path);
}

/* The text of an invalid configuration (built for the big ones). */
static char *
bad_text(const struct bad_config *bad, size_t *len)
{
	char	*text, *p;
	size_t	 i, depth = 20000;

	if (bad->text != NULL) {
		*len = strlen(bad->text);
		return (strdup(bad->text));
	}
	if (strcmp(bad->name, "string_longer_than_the_maximum_is_rejected") ==
	    0) {
		text = malloc(6000);
		assert_non_null(text);
		p = text + sprintf(text, "listeners = (\n  {\n    name = \"");
		memset(p, 'a', 5000);
		p += 5000;
		p += sprintf(p, "\";\n    listen = \"127.0.0.1:1\";\n"
		    "    backends = \"127.0.0.1:2\";\n  }\n);\n");
		*len = (size_t)(p - text);
		return (text);
	}
	/* Deep nesting: a = { a = { ... } }; twenty thousand levels. */
	text = malloc(depth * 10 + 32);
	assert_non_null(text);
	p = text + sprintf(text, "a = ");
	for (i = 0; i < depth; i++)
		p += sprintf(p, "{ a = ");
	p += sprintf(p, "1;");
	for (i = 0; i < depth; i++)
		p += sprintf(p, " };");
	*p++ = '\n';
	*len = (size_t)(p - text);
	return (text);
}

/*
 * Check the reported errors: the count, "PATH:LINE: " before the first,
 * and every expected word in it.
 */
static void
expect_errors(const char *path, const struct causes *c,
    const struct bad_config *bad)
{
	char	 prefix[PATH_MAX + 32];
	size_t	 i;

	if (c->n == 0 || (bad->count != 0 && c->n != bad->count)) {
		print_error("expected %zu error(s), got %zu:\n", bad->count,
		    c->n);
		for (i = 0; i < c->n; i++)
			print_error("  %s\n", c->v[i]);
		fail();
	}
	if (bad->line != 0)
		snprintf(prefix, sizeof prefix, "%s:%d: ", path, bad->line);
	else
		snprintf(prefix, sizeof prefix, "%s:", path);
	if (strncmp(c->v[0], prefix, strlen(prefix)) != 0) {
		print_error("\"%s\" does not start with \"%s\"\n", c->v[0],
		    prefix);
		fail();
	}
	for (i = 0; i < nitems(bad->words) && bad->words[i] != NULL; i++) {
		if (strstr(c->v[0], bad->words[i]) == NULL) {
			print_error("\"%s\" lacks \"%s\"\n", c->v[0],
			    bad->words[i]);
			fail();
		}
	}
}

/* Each invalid configuration is refused with its line and message. */
static void
test_invalid_configuration(void **state)
{
	struct fixture		*f = *state;
	struct causes		 c = { NULL, 0 };
	struct config		*conf;
	const char		*path;
	char			*text;
	size_t			 len;

	text = bad_text(f->bad, &len);
	path = write_file(f, "acceptd.conf", text, len);
	free(text);
	conf = config_load(path, &c);
	if (conf != NULL) {
		print_error("accepted:\n%s\n", f->bad->text);
		config_unref(conf);
		fail();
	}
	expect_errors(path, &c, f->bad);
	causes_free(&c);
	assert_null(c.v);
	assert_int_equal(c.n, 0);
}

/* Load a file that must be valid. */
static struct config *
load_ok(const char *path)
{
	struct causes	 c = { NULL, 0 };
	struct config	*conf;
	size_t		 i;

	conf = config_load(path, &c);
	if (conf == NULL) {
		for (i = 0; i < c.n; i++)
			print_error("%s\n", c.v[i]);
		causes_free(&c);
		fail();
	}
	assert_int_equal(c.n, 0);
	return (conf);
}

/* Dump a configuration into a file. */
static void
dump_to_file(const struct config *conf, const char *path)
{
	FILE	*fp;

	fp = fopen(path, "w");
	assert_non_null(fp);
	config_dump(conf, fp);
	assert_int_equal(fclose(fp), 0);
}

/* Read a whole file into a string. */
static char *
read_whole(const char *path)
{
	FILE	*fp;
	char	*buf;
	long	 len;

	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	len = ftell(fp);
	assert_true(len >= 0);
	rewind(fp);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
	buf[len] = '\0';
	fclose(fp);
	return (buf);
}

/* A minimal file gets exactly DESIGN.md's defaults. */
static void
test_minimal_configuration_gets_the_documented_defaults(void **state)
{
	struct fixture		*f = *state;
	struct config		*conf;
	struct listener_conf	*lc;
	const char		*path;

	path = write_file(f, "acceptd.conf", MINIMAL, strlen(MINIMAL));
	conf = load_ok(path);
	assert_int_equal(conf->refcnt, 1);
	assert_string_equal(conf->path, path);
	assert_int_equal(conf->nfiles, 1);
	assert_string_equal(conf->files[0], path);
	assert_null(conf->user);
	assert_null(conf->group);
	assert_int_equal(conf->log_level, LOG_LEVEL_INFO);
	assert_int_equal(conf->log_connections, LOG_CONNS_CLOSE);
	assert_int_equal(conf->max_connections, 0);
	assert_int_equal(conf->shutdown_timeout_ms, 30000);
	assert_int_equal(conf->workers, 1);
	assert_null(conf->control_socket);
	assert_null(conf->metrics);
	assert_string_equal(conf->resolv_conf, "/etc/resolv.conf");

	assert_int_equal(conf->nlisteners, 1);
	lc = &conf->listeners[0];
	assert_string_equal(lc->name, "web");
	assert_string_equal(lc->file, path);
	assert_int_equal(lc->line, 2);
	assert_int_equal(lc->nlisten, 1);
	assert_int_equal(lc->listen[0].kind, ADDRESS_INET);
	assert_int_equal(lc->listen[0].port, 8080);
	assert_int_equal(lc->nbackends, 1);
	assert_string_equal(lc->backends[0].addr.text, "127.0.0.1:9001");
	assert_int_equal(lc->backends[0].weight, 1);
	assert_int_equal(lc->backends[0].backup, 0);
	assert_string_equal(lc->backends[0].file, path);
	assert_int_equal(lc->backends[0].line, 5);
	assert_int_equal(lc->connect_timeout_ms, 3000);
	assert_int_equal(lc->idle_timeout_ms, 600000);
	assert_int_equal(lc->fin_timeout_ms, 60000);
	assert_int_equal(lc->resolve_interval_ms, 60000);
	assert_int_equal(lc->retries, 3);
	assert_int_equal(lc->buffer_size, 65536);
	assert_int_equal(lc->balance, BALANCE_ROUNDROBIN);
	assert_int_equal(lc->max_connections, 0);
	assert_int_equal(lc->max_connections_per_ip, 0);
	assert_int_equal(lc->nallow, 0);
	assert_int_equal(lc->ndeny, 0);
	assert_int_equal(lc->send_proxy, SEND_PROXY_NONE);
	assert_int_equal(lc->accept_proxy, 0);
	assert_int_equal(lc->backlog, 4096);
	assert_int_equal(lc->reuseport, 0);
	assert_int_equal(lc->freebind, 0);
	assert_int_equal(lc->defer_accept, 0);
	assert_int_equal(lc->nodelay, 1);
	assert_int_equal(lc->keepalive, 1);
	assert_int_equal(lc->splice, 1);
	assert_int_equal(lc->health.enabled, 0);
	config_unref(conf);
}

/* Every setting at a value this version takes, read into the snapshot. */
static const char full_example[] =
    "# Every setting this version takes.\n"
    "log_level = \"debug\";\n"
    "log_connections = \"all\";\n"
    "max_connections = 0;\n"
    "shutdown_timeout = 5;\n"
    "workers = 1;\n"
    "resolv_conf = \"/etc/resolv.conf\";\n"
    "defaults = {\n"
    "  connect_timeout = \"1500ms\";\n"
    "  idle_timeout = \"1h\";\n"
    "  fin_timeout = 20;\n"
    "  resolve_interval = \"1m\";\n"
    "  retries = 5;\n"
    "  buffer_size = 16384;\n"
    "  balance = \"roundrobin\";\n"
    "  backends = [ \"127.0.0.1:9001\", \"[::1]:9002\" ];\n"
    "  allow = [];\n"
    "  splice = false;\n"
    "};\n"
    "listeners = (\n"
    "  {\n"
    "    name = \"web_1.a-b\";\n"
    "    listen = [ \"127.0.0.1:8080\", \"[::1]:8080\", \"*:8081\" ];\n"
    "    backlog = 128;\n"
    "    reuseport = true; freebind = true; defer_accept = true;\n"
    "    nodelay = false; keepalive = false;\n"
    "    max_connections = 0;\n"
    "    max_connections_per_ip = 0;\n"
    "    deny = [];\n"
    "    send_proxy = \"none\";\n"
    "    accept_proxy = false;\n"
    "  },\n"
    "  {\n"
    "    name = \"unix\";\n"
    "    listen = \"unix:/run/acceptd-test/web.sock\";\n"
    "    backends = ( { address = \"unix:/run/app.sock\"; weight = 1;"
    " backup = false; },\n"
    "                 \"127.0.0.1:9003\" );\n"
    "    idle_timeout = 0;\n"
    "    buffer_size = \"1m\";\n"
    "    connect_timeout = \"1m30s\";\n"
    "    retries = 0;\n"
    "  }\n"
    ");\n";

/* The full example: every value lands where it should. */
static void
test_full_example_is_read_into_the_snapshot(void **state)
{
	struct fixture		*f = *state;
	struct config		*conf;
	struct listener_conf	*a, *b;
	const char		*path;

	path = write_file(f, "acceptd.conf", full_example,
	    strlen(full_example));
	conf = load_ok(path);
	assert_int_equal(conf->log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(conf->log_connections, LOG_CONNS_ALL);
	assert_int_equal(conf->shutdown_timeout_ms, 5000);
	assert_int_equal(conf->nlisteners, 2);

	a = &conf->listeners[0];
	assert_string_equal(a->name, "web_1.a-b");
	assert_int_equal(a->nlisten, 3);
	assert_int_equal(a->listen[1].ss.ss_family, AF_INET6);
	assert_int_equal(a->listen[2].kind, ADDRESS_ANY);
	assert_int_equal(a->listen[2].port, 8081);
	/* Inherited from defaults. */
	assert_int_equal(a->nbackends, 2);
	assert_string_equal(a->backends[1].addr.text, "[::1]:9002");
	assert_int_equal(a->connect_timeout_ms, 1500);
	assert_int_equal(a->idle_timeout_ms, 3600000);
	assert_int_equal(a->fin_timeout_ms, 20000);
	assert_int_equal(a->retries, 5);
	assert_int_equal(a->buffer_size, 16384);
	assert_int_equal(a->splice, 0);
	/* Its own. */
	assert_int_equal(a->backlog, 128);
	assert_int_equal(a->reuseport, 1);
	assert_int_equal(a->freebind, 1);
	assert_int_equal(a->defer_accept, 1);
	assert_int_equal(a->nodelay, 0);
	assert_int_equal(a->keepalive, 0);

	b = &conf->listeners[1];
	assert_string_equal(b->name, "unix");
	assert_int_equal(b->listen[0].kind, ADDRESS_UNIX);
	/* Its own backends replace the inherited ones. */
	assert_int_equal(b->nbackends, 2);
	assert_int_equal(b->backends[0].addr.kind, ADDRESS_UNIX);
	assert_int_equal(b->backends[0].line, 36);
	assert_string_equal(b->backends[1].addr.text, "127.0.0.1:9003");
	assert_int_equal(b->backends[1].line, 37);
	assert_int_equal(b->idle_timeout_ms, 0);
	assert_int_equal(b->buffer_size, 1048576);
	assert_int_equal(b->connect_timeout_ms, 90000);
	assert_int_equal(b->retries, 0);
	assert_int_equal(b->fin_timeout_ms, 20000);
	assert_int_equal(b->splice, 0);
	assert_int_equal(b->backlog, 4096);
	config_unref(conf);
}

/* Balance, weights, backups, host names, health checks and DNS settings. */
static void
test_pool_settings_are_read(void **state)
{
	static const char	 text[] =
	    "resolv_conf = \"/tmp/resolv.test\";\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"web\";\n"
	    "    listen = \"127.0.0.1:8080\";\n"
	    "    backends = ( { address = \"127.0.0.1:9001\"; weight = 3; },\n"
	    "      \"app.example.test:9002\",\n"
	    "      { address = \"unix:/run/b.sock\"; backup = true; } );\n"
	    "    balance = \"source\";\n"
	    "    resolve_interval = \"5s\";\n"
	    "    health_check = { interval = \"500ms\"; timeout = \"200ms\"; "
	    "rise = 4; fall = 5; };\n"
	    "  }\n"
	    ");\n";
	struct fixture		*f = *state;
	struct config		*conf;
	struct listener_conf	*lc;
	const char		*path;

	path = write_file(f, "acceptd.conf", text, strlen(text));
	conf = load_ok(path);
	assert_string_equal(conf->resolv_conf, "/tmp/resolv.test");
	lc = &conf->listeners[0];
	assert_int_equal(lc->balance, BALANCE_SOURCE);
	assert_int_equal(lc->resolve_interval_ms, 5000);
	assert_int_equal(lc->nbackends, 3);
	assert_int_equal(lc->backends[0].weight, 3);
	assert_int_equal(lc->backends[0].backup, 0);
	assert_int_equal(lc->backends[1].addr.kind, ADDRESS_NAME);
	assert_string_equal(lc->backends[1].addr.host, "app.example.test");
	assert_int_equal(lc->backends[1].addr.port, 9002);
	assert_int_equal(lc->backends[1].weight, 1);
	assert_int_equal(lc->backends[1].line, 7);
	assert_int_equal(lc->backends[2].backup, 1);
	assert_int_equal(lc->health.enabled, 1);
	assert_int_equal(lc->health.interval_ms, 500);
	assert_int_equal(lc->health.timeout_ms, 200);
	assert_int_equal(lc->health.rise, 4);
	assert_int_equal(lc->health.fall, 5);
	config_unref(conf);
}

/* Caps, access lists and the PROXY protocol, with defaults inherited. */
static void
test_limit_and_proxy_settings_are_read(void **state)
{
	static const char	 text[] =
	    "max_connections = 5000;\n"
	    "defaults = {\n"
	    "  deny = [ \"192.0.2.66\" ];\n"
	    "  send_proxy = \"v2\";\n"
	    "};\n"
	    "listeners = (\n"
	    "  {\n"
	    "    name = \"web\";\n"
	    "    listen = \"127.0.0.1:8080\";\n"
	    "    backends = \"127.0.0.1:9001\";\n"
	    "    max_connections = 100;\n"
	    "    max_connections_per_ip = 10;\n"
	    "    allow = [ \"127.0.0.0/8\", \"::1\" ];\n"
	    "    accept_proxy = true;\n"
	    "  }\n"
	    ");\n";
	struct fixture		*f = *state;
	struct config		*conf;
	struct listener_conf	*lc;
	const char		*path;

	path = write_file(f, "acceptd.conf", text, strlen(text));
	conf = load_ok(path);
	assert_int_equal(conf->max_connections, 5000);
	lc = &conf->listeners[0];
	assert_int_equal(lc->max_connections, 100);
	assert_int_equal(lc->max_connections_per_ip, 10);
	assert_int_equal(lc->nallow, 2);
	assert_string_equal(lc->allow[1].text, "::1");
	assert_int_equal(lc->ndeny, 1);
	assert_string_equal(lc->deny[0].text, "192.0.2.66");
	assert_int_equal(lc->send_proxy, SEND_PROXY_V2);
	assert_int_equal(lc->accept_proxy, 1);
	config_unref(conf);
}

/* workers: a number of threads, or "auto" (kept as 0, one per CPU). */
static void
test_workers_settings_are_read(void **state)
{
	struct fixture		*f = *state;
	struct config		*conf;
	const char		*path;

	path = write_file(f, "acceptd.conf", "workers = 4;\n" MINIMAL,
	    strlen("workers = 4;\n" MINIMAL));
	conf = load_ok(path);
	assert_int_equal(conf->workers, 4);
	config_unref(conf);
	path = write_file(f, "acceptd.conf", "workers = \"auto\";\n" MINIMAL,
	    strlen("workers = \"auto\";\n" MINIMAL));
	conf = load_ok(path);
	assert_int_equal(conf->workers, 0);
	config_unref(conf);
}

/* -T output loads again and dumps identically. */
static void
test_dump_round_trips_identically(void **state)
{
	struct fixture	*f = *state;
	struct config	*conf, *again;
	char		 first[PATH_MAX], second[PATH_MAX], *t1, *t2;
	const char	*path;
	const char	*sources[] = { full_example, MINIMAL };
	size_t		 i;

	for (i = 0; i < nitems(sources); i++) {
		path = write_file(f, "acceptd.conf", sources[i],
		    strlen(sources[i]));
		conf = load_ok(path);
		snprintf(first, sizeof first, "%s/dump1.conf", f->dir);
		dump_to_file(conf, first);
		again = load_ok(first);
		snprintf(second, sizeof second, "%s/dump2.conf", f->dir);
		dump_to_file(again, second);
		t1 = read_whole(first);
		t2 = read_whole(second);
		assert_string_equal(t1, t2);
		assert_int_equal(again->nlisteners, conf->nlisteners);
		assert_int_equal(again->listeners[0].connect_timeout_ms,
		    conf->listeners[0].connect_timeout_ms);
		assert_int_equal(again->listeners[0].buffer_size,
		    conf->listeners[0].buffer_size);
		free(t1);
		free(t2);
		config_unref(again);
		config_unref(conf);
	}
}

/* -T shows every default in its nicest exact form, with no defaults group. */
static void
test_dump_fills_in_defaults(void **state)
{
	struct fixture	*f = *state;
	struct config	*conf;
	char		 out[PATH_MAX], *text;
	const char	*path;
	static const char *const lines[] = {
		"log_level = \"info\";\n",
		"log_connections = \"close\";\n",
		"shutdown_timeout = \"30s\";\n",
		"workers = 1;\n",
		"resolv_conf = \"/etc/resolv.conf\";\n",
		"    name = \"web\";\n",
		"    listen = [ \"127.0.0.1:8080\" ];\n",
		"      { address = \"127.0.0.1:9001\"; weight = 1; "
		    "backup = false; }\n",
		"    connect_timeout = \"3s\";\n",
		"    idle_timeout = \"10m\";\n",
		"    fin_timeout = \"1m\";\n",
		"    resolve_interval = \"1m\";\n",
		"    retries = 3;\n",
		"    buffer_size = \"64k\";\n",
		"    balance = \"roundrobin\";\n",
		"    backlog = 4096;\n",
		"    allow = [ ];\n",
		"    send_proxy = \"none\";\n",
		"    splice = true;\n",
		"    nodelay = true;\n"
	};
	size_t		 i;

	path = write_file(f, "acceptd.conf", MINIMAL, strlen(MINIMAL));
	conf = load_ok(path);
	snprintf(out, sizeof out, "%s/dump.conf", f->dir);
	dump_to_file(conf, out);
	text = read_whole(out);
	for (i = 0; i < nitems(lines); i++) {
		if (strstr(text, lines[i]) == NULL) {
			print_error("dump lacks %s%s", lines[i], text);
			fail();
		}
	}
	assert_null(strstr(text, "defaults"));
	free(text);
	config_unref(conf);
}

/* The repository's conf/acceptd.conf is valid and round-trips. */
static void
test_shipped_configuration_is_valid(void **state)
{
	struct fixture	*f = *state;
	struct config	*conf, *again;
	char		 out[PATH_MAX];

	conf = load_ok(TOP_SRCDIR "/conf/acceptd.conf");
	assert_true(conf->nlisteners >= 1);
	snprintf(out, sizeof out, "%s/dump.conf", f->dir);
	dump_to_file(conf, out);
	again = load_ok(out);
	assert_int_equal(again->nlisteners, conf->nlisteners);
	config_unref(again);
	config_unref(conf);
}

/* @include is relative to the main file's directory, not the cwd. */
static void
test_include_is_relative_to_the_main_file(void **state)
{
	struct fixture	*f = *state;
	struct config	*conf;
	char		 sub[PATH_MAX], main_path[PATH_MAX], cwd[PATH_MAX];
	const char	*text =
	    "defaults = {\n"
	    "@include \"parts/defaults.conf\"\n"
	    "};\n"
	    "@include \"parts/listeners.conf\"\n";

	snprintf(sub, sizeof sub, "%s/parts", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	write_file(f, "parts/defaults.conf", "retries = 7;\n", 13);
	write_file(f, "parts/listeners.conf", MINIMAL, strlen(MINIMAL));
	snprintf(main_path, sizeof main_path, "%s",
	    write_file(f, "main.conf", text, strlen(text)));

	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir("/"), 0);
	conf = load_ok(main_path);
	assert_int_equal(chdir(cwd), 0);

	assert_int_equal(conf->listeners[0].retries, 7);
	assert_int_equal(conf->nfiles, 3);
	assert_string_equal(conf->files[0], main_path);
	snprintf(sub, sizeof sub, "%s/parts/defaults.conf", f->dir);
	assert_string_equal(conf->files[1], sub);
	snprintf(sub, sizeof sub, "%s/parts/listeners.conf", f->dir);
	assert_string_equal(conf->files[2], sub);
	/* The listener remembers the included file it was written in. */
	assert_string_equal(conf->listeners[0].file, sub);
	config_unref(conf);
}

/* An error in an included file names that file and its own line. */
static void
test_include_error_names_the_included_file(void **state)
{
	struct fixture	*f = *state;
	struct causes	 c = { NULL, 0 };
	char		 inc[PATH_MAX], want[PATH_MAX + 64];
	const char	*path;
	const char	*text =
	    "log_level = \"info\";\n@include \"inc.conf\"\n";

	snprintf(inc, sizeof inc, "%s",
	    write_file(f, "inc.conf", "\n\nretries = 3;\n" MINIMAL, 15 +
	    strlen(MINIMAL)));
	path = write_file(f, "main.conf", text, strlen(text));
	assert_null(config_load(path, &c));
	assert_int_equal(c.n, 1);
	snprintf(want, sizeof want, "%s:3: setting 'retries'", inc);
	if (strncmp(c.v[0], want, strlen(want)) != 0) {
		print_error("\"%s\" does not start with \"%s\"\n", c.v[0],
		    want);
		fail();
	}
	causes_free(&c);
}

/* A huge literal in an included file is caught there too. */
static void
test_include_huge_integer_is_rejected(void **state)
{
	struct fixture	*f = *state;
	struct causes	 c = { NULL, 0 };
	const char	*path;
	const char	*text = "defaults = {\n@include \"inc.conf\"\n};\n"
	    MINIMAL;

	write_file(f, "inc.conf", "backlog = 4294967396;\n", 22);
	path = write_file(f, "main.conf", text, strlen(text));
	assert_null(config_load(path, &c));
	assert_int_equal(c.n, 1);
	assert_non_null(strstr(c.v[0], "inc.conf:1: setting 'backlog'"));
	assert_non_null(strstr(c.v[0], "got 4294967396"));
	causes_free(&c);
}

/* @include of a directory is refused without libconfig exiting. */
static void
test_include_directory_is_refused_in_process(void **state)
{
	struct fixture	*f = *state;
	struct causes	 c = { NULL, 0 };
	char		 dir[PATH_MAX];
	const char	*path;
	const char	*text = "log_level = \"info\";\n@include \"confdir\"\n"
	    MINIMAL;

	snprintf(dir, sizeof dir, "%s/confdir", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	path = write_file(f, "acceptd.conf", text, strlen(text));
	assert_null(config_load(path, &c));
	assert_int_equal(c.n, 1);
	assert_non_null(strstr(c.v[0], "acceptd.conf:2: @include "
	    "\"confdir\""));
	assert_non_null(strstr(c.v[0], "is a directory"));
	causes_free(&c);
}

/* config_check_in_child: @include of a directory gives an error, no exit. */
static void
test_child_check_reports_include_of_directory(void **state)
{
	struct fixture	*f = *state;
	struct causes	 c = { NULL, 0 };
	char		 dir[PATH_MAX];
	const char	*path;
	const char	*text = "log_level = \"info\";\n@include \"confdir\"\n"
	    MINIMAL;

	snprintf(dir, sizeof dir, "%s/confdir", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	path = write_file(f, "acceptd.conf", text, strlen(text));
	assert_int_equal(config_check_in_child(path, &c), -1);
	assert_int_equal(c.n, 1);
	assert_non_null(strstr(c.v[0], "acceptd.conf:2: @include "));
	assert_non_null(strstr(c.v[0], "is a directory"));
	causes_free(&c);
}

/*
 * config_check_in_child survives libconfig calling exit(): an include that
 * stat() calls a file but read() fails on (/proc/self/mem) makes flex
 * exit, and the parent says so.
 */
static void
test_child_check_survives_parser_exit(void **state)
{
	struct fixture	*f = *state;
	struct causes	 c = { NULL, 0 };
	char		 text[512];
	const char	*path;

	snprintf(text, sizeof text, "@include \"../../../../../../../../proc/"
	    "self/mem\"\n%s", MINIMAL);
	path = write_file(f, "acceptd.conf", text, strlen(text));
	assert_int_equal(config_check_in_child(path, &c), -1);
	assert_true(c.n >= 1);
	assert_non_null(strstr(c.v[0], path));
	assert_non_null(strstr(c.v[0], "configuration could not be read (the "
	    "parser exited with status"));
	causes_free(&c);
}

/* config_check_in_child: 0 for a valid file, every error otherwise. */
static void
test_child_check_returns_every_error(void **state)
{
	struct fixture	*f = *state;
	struct causes	 c = { NULL, 0 };
	const char	*path;
	const char	*bad = "log_level = \"loud\";\nworkers = 0;\n"
	    LISTENER("    retries = 500;\n");

	path = write_file(f, "good.conf", MINIMAL, strlen(MINIMAL));
	assert_int_equal(config_check_in_child(path, &c), 0);
	assert_int_equal(c.n, 0);

	path = write_file(f, "bad.conf", bad, strlen(bad));
	assert_int_equal(config_check_in_child(path, &c), -1);
	assert_int_equal(c.n, 3);
	assert_non_null(strstr(c.v[0], "bad.conf:1: setting 'log_level'"));
	assert_non_null(strstr(c.v[1], "bad.conf:2: setting 'workers'"));
	assert_non_null(strstr(c.v[2], "bad.conf:8: setting 'retries'"));
	causes_free(&c);

	assert_int_equal(config_check_in_child("/nonexistent/acceptd.conf",
	    &c), -1);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.v[0], "/nonexistent/acceptd.conf: No such file "
	    "or directory");
	causes_free(&c);
}

/* A missing file and a directory are "PATH: reason". */
static void
test_unreadable_path_is_reported_with_the_reason(void **state)
{
	struct fixture	*f = *state;
	struct causes	 c = { NULL, 0 };
	char		 want[PATH_MAX + 64], path[PATH_MAX];

	snprintf(path, sizeof path, "%s/missing.conf", f->dir);
	assert_null(config_load(path, &c));
	assert_int_equal(c.n, 1);
	snprintf(want, sizeof want, "%s: No such file or directory", path);
	assert_string_equal(c.v[0], want);
	causes_free(&c);

	assert_null(config_load(f->dir, &c));
	assert_int_equal(c.n, 1);
	snprintf(want, sizeof want, "%s: is a directory, not a file", f->dir);
	assert_string_equal(c.v[0], want);
	causes_free(&c);

	assert_null(config_load("/dev/null", &c));
	assert_int_equal(c.n, 1);
	assert_string_equal(c.v[0], "/dev/null: is not a regular file");
	causes_free(&c);
}

/* References: the snapshot lives until the last one is dropped. */
static void
test_references_keep_the_snapshot_alive(void **state)
{
	struct fixture	*f = *state;
	struct config	*conf;
	const char	*path;

	path = write_file(f, "acceptd.conf", MINIMAL, strlen(MINIMAL));
	conf = load_ok(path);
	assert_ptr_equal(config_ref(conf), conf);
	assert_ptr_equal(config_ref(conf), conf);
	assert_int_equal(conf->refcnt, 3);
	config_unref(conf);
	config_unref(conf);
	assert_int_equal(conf->refcnt, 1);
	assert_string_equal(conf->listeners[0].name, "web");
	config_unref(conf);
	config_unref(NULL);
}

/* Causes collect, print one per line, and free. */
static void
test_causes_collect_and_print(void **state)
{
	struct causes	 c = { NULL, 0 };
	char		 buf[128];
	FILE		*fp;

	causes_add(&c, "%s:%d: %s", "a.conf", 3, "first");
	causes_add(&c, "second %c", '!');
	assert_int_equal(c.n, 2);
	fp = fmemopen(buf, sizeof buf, "w");
	assert_non_null(fp);
	causes_print(&c, fp);
	fclose(fp);
	assert_string_equal(buf, "a.conf:3: first\nsecond !\n");
	causes_free(&c);
	assert_int_equal(c.n, 0);
	causes_free(&c);
}

int
main(void)
{
	const struct CMUnitTest fixed[] = {
		cmocka_unit_test_setup_teardown(
		    test_minimal_configuration_gets_the_documented_defaults,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_full_example_is_read_into_the_snapshot,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_pool_settings_are_read, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_limit_and_proxy_settings_are_read, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_dump_round_trips_identically, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_dump_fills_in_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_shipped_configuration_is_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_include_is_relative_to_the_main_file,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_include_error_names_the_included_file,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_include_huge_integer_is_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_include_directory_is_refused_in_process,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_child_check_reports_include_of_directory,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_child_check_survives_parser_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_child_check_returns_every_error, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_unreadable_path_is_reported_with_the_reason,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_references_keep_the_snapshot_alive,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_workers_settings_are_read, setup, teardown),
		cmocka_unit_test(test_causes_collect_and_print)
	};
	struct CMUnitTest	 tests[nitems(fixed) + nitems(bad_configs)];
	size_t			 i;

	memcpy(tests, fixed, sizeof fixed);
	for (i = 0; i < nitems(bad_configs); i++) {
		tests[nitems(fixed) + i] = (struct CMUnitTest){
			.name = bad_configs[i].name,
			.test_func = test_invalid_configuration,
			.setup_func = setup,
			.teardown_func = teardown,
			.initial_state = (void *)&bad_configs[i]
		};
	}
	return (_cmocka_run_group_tests("test_config", tests, nitems(tests),
	    NULL, NULL));
}
