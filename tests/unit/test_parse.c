/*
 * Unit tests for parse.c: durations, sizes, addresses, CIDRs, matching and
 * formatting.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acceptd.h"

/* A string and what parsing it must give. */
struct number_case {
	const char	*text;
	long long	 value;
};

/* A string that must be refused, and a word the reason must contain. */
struct bad_case {
	const char	*text;
	const char	*reason;
};

static void	 expect_duration(const char *, long long);
static void	 expect_bad_duration(const char *, const char *);
static void	 expect_size(const char *, long long);
static void	 expect_bad_size(const char *, const char *);
static void	 expect_bad_address(const char *, int, const char *);
static void	 expect_bad_cidr(const char *, const char *);
static void	 make_sin(struct sockaddr_in *, const char *, uint16_t);
static void	 make_sin6(struct sockaddr_in6 *, const char *, uint16_t);
static int	 match(const char *, const struct sockaddr *);

/* Parse a duration that must be valid and equal ms. */
static void
expect_duration(const char *s, long long ms)
{
	long long	 v = -1;
	char		*cause = NULL;

	if (parse_duration_string(s, &v, &cause) != 0) {
		print_error("\"%s\": %s\n", s, cause);
		free(cause);
		fail();
	}
	assert_null(cause);
	assert_int_equal(v, ms);
}

/* Parse a duration that must be refused with a reason containing word. */
static void
expect_bad_duration(const char *s, const char *word)
{
	long long	 v = 12345;
	char		*cause = NULL;

	if (parse_duration_string(s, &v, &cause) == 0) {
		print_error("\"%s\" accepted as %lld\n", s, v);
		fail();
	}
	assert_non_null(cause);
	if (strstr(cause, word) == NULL) {
		print_error("\"%s\": \"%s\" lacks \"%s\"\n", s, cause, word);
		free(cause);
		fail();
	}
	free(cause);
}

/* Parse a size that must be valid and equal bytes. */
static void
expect_size(const char *s, long long bytes)
{
	long long	 v = -1;
	char		*cause = NULL;

	if (parse_size_string(s, &v, &cause) != 0) {
		print_error("\"%s\": %s\n", s, cause);
		free(cause);
		fail();
	}
	assert_int_equal(v, bytes);
}

/* Parse a size that must be refused with a reason containing word. */
static void
expect_bad_size(const char *s, const char *word)
{
	long long	 v = 12345;
	char		*cause = NULL;

	if (parse_size_string(s, &v, &cause) == 0) {
		print_error("\"%s\" accepted as %lld\n", s, v);
		fail();
	}
	assert_non_null(cause);
	if (strstr(cause, word) == NULL) {
		print_error("\"%s\": \"%s\" lacks \"%s\"\n", s, cause, word);
		free(cause);
		fail();
	}
	free(cause);
}

/* Parse an address that must be refused with a reason containing word. */
static void
expect_bad_address(const char *s, int flags, const char *word)
{
	struct address	 a;
	char		*cause = NULL;

	if (parse_address(s, flags, &a, &cause) == 0) {
		print_error("\"%s\" accepted (kind %d)\n", s, (int)a.kind);
		address_free(&a);
		fail();
	}
	assert_non_null(cause);
	assert_null(a.text);
	assert_null(a.host);
	if (strstr(cause, word) == NULL) {
		print_error("\"%s\": \"%s\" lacks \"%s\"\n", s, cause, word);
		free(cause);
		fail();
	}
	free(cause);
}

/* Parse a CIDR that must be refused with a reason containing word. */
static void
expect_bad_cidr(const char *s, const char *word)
{
	struct cidr	 c;
	char		*cause = NULL;

	if (parse_cidr(s, &c, &cause) == 0) {
		print_error("\"%s\" accepted\n", s);
		cidr_free(&c);
		fail();
	}
	assert_non_null(cause);
	if (strstr(cause, word) == NULL) {
		print_error("\"%s\": \"%s\" lacks \"%s\"\n", s, cause, word);
		free(cause);
		fail();
	}
	free(cause);
}

/* Fill in an IPv4 socket address. */
static void
make_sin(struct sockaddr_in *sin, const char *addr, uint16_t port)
{
	memset(sin, 0, sizeof *sin);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, addr, &sin->sin_addr), 1);
}

/* Fill in an IPv6 socket address. */
static void
make_sin6(struct sockaddr_in6 *sin6, const char *addr, uint16_t port)
{
	memset(sin6, 0, sizeof *sin6);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
}

/* Does the network written as text contain sa? */
static int
match(const char *text, const struct sockaddr *sa)
{
	struct cidr	 c;
	char		*cause = NULL;
	int		 rc;

	if (parse_cidr(text, &c, &cause) != 0) {
		print_error("\"%s\": %s\n", text, cause);
		free(cause);
		fail();
	}
	rc = cidr_match(&c, sa);
	cidr_free(&c);
	return (rc);
}

/* Durations: every unit, combinations, and bare zero with a unit. */
static void
test_duration_accepts_units_and_combinations(void **state)
{
	static const struct number_case	 good[] = {
		{ "0s", 0 },
		{ "0ms", 0 },
		{ "500ms", 500 },
		{ "3s", 3000 },
		{ "10m", 600000 },
		{ "1h", 3600000 },
		{ "1m30s", 90000 },
		{ "1h2m3s4ms", 3723004 },
		{ "2h30m", 9000000 },
		{ "007s", 7000 },
		{ "1500ms", 1500 },
		{ "168h", 604800000 }
	};
	size_t				 i;

	for (i = 0; i < nitems(good); i++)
		expect_duration(good[i].text, good[i].value);
}

/* Durations: garbage, signs, spaces, wrong order and overflow. */
static void
test_duration_rejects_garbage_and_overflow(void **state)
{
	static const struct bad_case	 bad[] = {
		{ "", "empty" },
		{ "3", "unit" },
		{ "10m30", "unit" },
		{ "3x", "unknown unit \"x\"" },
		{ "3S", "unknown unit \"S\"" },
		{ "3sec", "unknown unit \"sec\"" },
		{ "-3s", "expected a number" },
		{ "+3s", "expected a number" },
		{ " 3s", "expected a number" },
		{ "3s ", "expected a number" },
		{ "3.5s", "unit" },
		{ "s", "expected a number" },
		{ "30s1m", "largest to the smallest" },
		{ "1s1s", "largest to the smallest" },
		{ "1ms1s", "largest to the smallest" },
		{ "99999999999999999999ms", "too large" },
		{ "9223372036854775807h", "too large" },
		{ "2562047788015216h", "too large" },
		{ "0x10s", "unit" }
	};
	size_t				 i;

	for (i = 0; i < nitems(bad); i++)
		expect_bad_duration(bad[i].text, bad[i].reason);
}

/* Sizes: bytes, k and m in either case (k = 1024). */
static void
test_size_accepts_bytes_k_and_m(void **state)
{
	static const struct number_case	 good[] = {
		{ "0", 0 },
		{ "1000", 1000 },
		{ "4k", 4096 },
		{ "64k", 65536 },
		{ "64K", 65536 },
		{ "1m", 1048576 },
		{ "2M", 2097152 },
		{ "9223372036854775807", 9223372036854775807LL }
	};
	size_t				 i;

	for (i = 0; i < nitems(good); i++)
		expect_size(good[i].text, good[i].value);
}

/* Sizes: garbage, fractions, other units and overflow. */
static void
test_size_rejects_garbage_and_overflow(void **state)
{
	static const struct bad_case	 bad[] = {
		{ "", "empty" },
		{ "k", "expected a number" },
		{ "-1k", "expected a number" },
		{ " 64k", "expected a number" },
		{ "64kb", "unknown unit \"kb\"" },
		{ "64 k", "unknown unit" },
		{ "1g", "unknown unit \"g\"" },
		{ "1.5k", "unknown unit" },
		{ "99999999999999999999", "too large" },
		{ "9007199254740992m", "too large" },
		{ "9223372036854775807k", "too large" }
	};
	size_t				 i;

	for (i = 0; i < nitems(bad); i++)
		expect_bad_size(bad[i].text, bad[i].reason);
}

/* IPv4 and IPv6 literals become ADDRESS_INET with the port set. */
static void
test_address_parses_ipv4_and_ipv6_literals(void **state)
{
	struct address		 a;
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;
	char			*cause = NULL, buf[64];

	assert_int_equal(parse_address("127.0.0.1:8080",
	    PARSE_ADDRESS_LISTEN, &a, &cause), 0);
	assert_int_equal(a.kind, ADDRESS_INET);
	assert_int_equal(a.port, 8080);
	assert_string_equal(a.text, "127.0.0.1:8080");
	assert_null(a.host);
	sin = (struct sockaddr_in *)&a.ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(a.sslen, sizeof *sin);
	address_free(&a);

	assert_int_equal(parse_address("[::1]:443", PARSE_ADDRESS_BACKEND,
	    &a, &cause), 0);
	assert_int_equal(a.kind, ADDRESS_INET);
	assert_int_equal(a.port, 443);
	sin6 = (struct sockaddr_in6 *)&a.ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 443);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(a.sslen, sizeof *sin6);
	assert_string_equal(format_sockaddr((struct sockaddr *)&a.ss, a.sslen,
	    buf, sizeof buf), "[::1]:443");
	address_free(&a);

	assert_int_equal(parse_address("[2001:db8::7]:65535", 0, &a, &cause),
	    0);
	assert_int_equal(a.port, 65535);
	address_free(&a);

	assert_int_equal(parse_address("0.0.0.0:80", PARSE_ADDRESS_LISTEN,
	    &a, &cause), 0);
	assert_int_equal(a.kind, ADDRESS_INET);
	address_free(&a);
	assert_null(cause);
}

/* "*:port" is the wildcard of listen addresses only. */
static void
test_address_star_only_in_listen(void **state)
{
	struct address	 a;
	char		*cause = NULL;

	assert_int_equal(parse_address("*:80", PARSE_ADDRESS_LISTEN, &a,
	    &cause), 0);
	assert_int_equal(a.kind, ADDRESS_ANY);
	assert_int_equal(a.port, 80);
	assert_string_equal(a.text, "*:80");
	address_free(&a);

	expect_bad_address("*:80", PARSE_ADDRESS_BACKEND, "only allowed in "
	    "listen");
	expect_bad_address("*:80", 0, "only allowed in listen");
}

/* "unix:/path" becomes a sockaddr_un; the path must be absolute and fit. */
static void
test_address_parses_unix_paths(void **state)
{
	struct address		 a;
	struct sockaddr_un	*sun;
	char			*cause = NULL, path[200], buf[256];
	size_t			 max = sizeof sun->sun_path - 1;

	assert_int_equal(parse_address("unix:/run/acceptd/web.sock",
	    PARSE_ADDRESS_LISTEN, &a, &cause), 0);
	assert_int_equal(a.kind, ADDRESS_UNIX);
	sun = (struct sockaddr_un *)&a.ss;
	assert_int_equal(sun->sun_family, AF_UNIX);
	assert_string_equal(sun->sun_path, "/run/acceptd/web.sock");
	assert_int_equal(a.sslen, offsetof(struct sockaddr_un, sun_path) +
	    strlen("/run/acceptd/web.sock") + 1);
	assert_string_equal(format_sockaddr((struct sockaddr *)&a.ss, a.sslen,
	    buf, sizeof buf), "unix:/run/acceptd/web.sock");
	address_free(&a);

	/* The longest path that fits, then one byte more. */
	memset(path, 'x', sizeof path);
	memcpy(path, "unix:/", 6);
	path[5 + max] = '\0';
	assert_int_equal(parse_address(path, PARSE_ADDRESS_BACKEND, &a,
	    &cause), 0);
	address_free(&a);
	path[5 + max] = 'x';
	path[6 + max] = '\0';
	expect_bad_address(path, PARSE_ADDRESS_BACKEND, "bytes long");

	expect_bad_address("unix:", PARSE_ADDRESS_LISTEN, "missing unix");
	expect_bad_address("unix:run/web.sock", PARSE_ADDRESS_LISTEN,
	    "not absolute");
}

/* Host names are backends only (ADDRESS_NAME); never in listen. */
static void
test_address_host_names_only_for_backends(void **state)
{
	struct address	 a, b;
	char		*cause = NULL;

	assert_int_equal(parse_address("localhost:9002",
	    PARSE_ADDRESS_BACKEND, &a, &cause), 0);
	assert_int_equal(a.kind, ADDRESS_NAME);
	assert_string_equal(a.host, "localhost");
	assert_int_equal(a.port, 9002);
	assert_int_equal(a.sslen, 0);

	address_copy(&b, &a);
	assert_ptr_not_equal(b.host, a.host);
	assert_ptr_not_equal(b.text, a.text);
	assert_string_equal(b.host, "localhost");
	assert_true(address_equal(&a, &b));
	address_free(&a);
	assert_null(a.text);
	assert_null(a.host);
	address_free(&b);

	assert_int_equal(parse_address("app-1.internal_net.example.:80",
	    PARSE_ADDRESS_BACKEND, &a, &cause), 0);
	assert_int_equal(a.kind, ADDRESS_NAME);
	address_free(&a);

	expect_bad_address("localhost:80", PARSE_ADDRESS_LISTEN, "host name");
	expect_bad_address("example.com:80", 0, "host name");
}

/* Malformed addresses are refused with a reason. */
static void
test_address_rejects_malformed(void **state)
{
	static const struct bad_case	 bad[] = {
		{ "", "empty" },
		{ "127.0.0.1", "missing port" },
		{ "127.0.0.1:", "missing port" },
		{ "127.0.0.1:0", "ports are 1 to 65535" },
		{ "127.0.0.1:65536", "ports are 1 to 65535" },
		{ "127.0.0.1:99999999999999999999", "ports are 1 to 65535" },
		{ "127.0.0.1:-1", "ports are 1 to 65535" },
		{ "127.0.0.1:+80", "ports are 1 to 65535" },
		{ "127.0.0.1: 80", "ports are 1 to 65535" },
		{ "127.0.0.1:80 ", "ports are 1 to 65535" },
		{ "127.0.0.1:8o", "ports are 1 to 65535" },
		{ "127.0.0.1:http", "ports are 1 to 65535" },
		{ ":80", "missing host" },
		{ "::1:80", "brackets" },
		{ "[::1]", "missing port" },
		{ "[::1]80", "expected ':'" },
		{ "[::1:80", "missing ']'" },
		{ "[::g]:80", "invalid IPv6" },
		{ "[127.0.0.1]:80", "invalid IPv6" },
		{ "[]:80", "invalid IPv6" },
		{ "1.2.3.256:80", "invalid IPv4" },
		{ "1.2.3:80", "invalid IPv4" },
		{ "01.2.3.4:80", "invalid IPv4" },
		{ "-host:80", "invalid host name" },
		{ "host-:80", "invalid host name" },
		{ "a..b:80", "invalid host name" },
		{ "host name:80", "invalid host name" },
		{ "host/x:80", "invalid host name" },
		{ "0.0.0.0:80", "cannot be a backend" },
		{ "[::]:80", "cannot be a backend" }
	};
	char				 longlabel[80];
	size_t				 i;

	for (i = 0; i < nitems(bad); i++)
		expect_bad_address(bad[i].text, PARSE_ADDRESS_BACKEND,
		    bad[i].reason);

	memset(longlabel, 'a', sizeof longlabel);
	snprintf(longlabel + 64, sizeof longlabel - 64, ".com:80");
	expect_bad_address(longlabel, PARSE_ADDRESS_BACKEND,
	    "invalid host name");
}

/* address_equal compares sockets, not spelling. */
static void
test_address_equal_compares_sockets(void **state)
{
	struct address	 a, b;
	char		*cause = NULL;

	assert_int_equal(parse_address("127.0.0.1:80", 0, &a, &cause), 0);
	assert_int_equal(parse_address("127.0.0.1:080", 0, &b, &cause), 0);
	assert_true(address_equal(&a, &b));
	address_free(&b);
	assert_int_equal(parse_address("127.0.0.1:81", 0, &b, &cause), 0);
	assert_false(address_equal(&a, &b));
	address_free(&b);
	assert_int_equal(parse_address("[::ffff:127.0.0.1]:80", 0, &b,
	    &cause), 0);
	assert_false(address_equal(&a, &b));
	address_free(&b);
	address_free(&a);

	assert_int_equal(parse_address("[::1]:80", 0, &a, &cause), 0);
	assert_int_equal(parse_address("[0:0::1]:80", 0, &b, &cause), 0);
	assert_true(address_equal(&a, &b));
	address_free(&a);
	address_free(&b);

	assert_int_equal(parse_address("Host.Example:80",
	    PARSE_ADDRESS_BACKEND, &a, &cause), 0);
	assert_int_equal(parse_address("host.example:80",
	    PARSE_ADDRESS_BACKEND, &b, &cause), 0);
	assert_true(address_equal(&a, &b));
	address_free(&a);
	address_free(&b);

	assert_int_equal(parse_address("unix:/a", 0, &a, &cause), 0);
	assert_int_equal(parse_address("unix:/ab", 0, &b, &cause), 0);
	assert_false(address_equal(&a, &b));
	address_free(&a);
	address_free(&b);
}

/* CIDRs: IPv4, IPv6, bare addresses, /0, and IPv4-mapped networks. */
static void
test_cidr_parses_networks_and_bare_addresses(void **state)
{
	struct cidr	 c;
	char		*cause = NULL;
	const uint8_t	 v4[4] = { 10, 1, 0, 0 };
	const uint8_t	 v6[16] = { 0x20, 0x01, 0x0d, 0xb8 };

	assert_int_equal(parse_cidr("10.1.0.0/16", &c, &cause), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 16);
	assert_memory_equal(c.addr, v4, 4);
	assert_string_equal(c.text, "10.1.0.0/16");
	cidr_free(&c);
	assert_null(c.text);

	assert_int_equal(parse_cidr("127.0.0.1", &c, &cause), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 32);
	cidr_free(&c);

	assert_int_equal(parse_cidr("2001:db8::/32", &c, &cause), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 32);
	assert_memory_equal(c.addr, v6, 16);
	cidr_free(&c);

	assert_int_equal(parse_cidr("::1", &c, &cause), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);
	cidr_free(&c);

	assert_int_equal(parse_cidr("0.0.0.0/0", &c, &cause), 0);
	assert_int_equal(c.prefix, 0);
	cidr_free(&c);
	assert_int_equal(parse_cidr("::/0", &c, &cause), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 0);
	cidr_free(&c);

	/* An IPv4-mapped network is stored as the IPv4 one. */
	assert_int_equal(parse_cidr("::ffff:10.1.0.0/112", &c, &cause), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 16);
	assert_memory_equal(c.addr, v4, 4);
	cidr_free(&c);
	assert_int_equal(parse_cidr("::ffff:127.0.0.1", &c, &cause), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 32);
	cidr_free(&c);
	assert_null(cause);
}

/* CIDRs: bad prefixes, host bits and garbage are refused. */
static void
test_cidr_rejects_bad_prefixes_and_host_bits(void **state)
{
	static const struct bad_case	 bad[] = {
		{ "", "empty" },
		{ "10.0.0.0/33", "too long for IPv4" },
		{ "::/129", "too long for IPv6" },
		{ "10.0.0.0/", "invalid prefix" },
		{ "10.0.0.0/-1", "invalid prefix" },
		{ "10.0.0.0/+8", "invalid prefix" },
		{ "10.0.0.0/8a", "invalid prefix" },
		{ "10.0.0.0/0008", "invalid prefix" },
		{ "10.0.0.0/8/8", "invalid prefix" },
		{ "10.0.0.1/8",
		    "host bits are set: the network is 10.0.0.0/8" },
		{ "192.168.1.129/25",
		    "host bits are set: the network is 192.168.1.128/25" },
		{ "2001:db8::1/32",
		    "host bits are set: the network is 2001:db8::/32" },
		{ "::ffff:10.0.0.1/104", "the network is 10.0.0.0/8" },
		{ "10.0.0.256", "invalid address" },
		{ "10.0.0", "invalid address" },
		{ "localhost", "invalid address" },
		{ "[::1]", "invalid address" },
		{ " 10.0.0.0/8", "invalid address" },
		{ "1111:2222:3333:4444:5555:6666:7777:8888/128 and more",
		    "invalid" }
	};
	size_t				 i;

	for (i = 0; i < nitems(bad); i++)
		expect_bad_cidr(bad[i].text, bad[i].reason);
}

/* cidr_match: prefixes on and off byte boundaries, both families. */
static void
test_cidr_match_prefixes_and_families(void **state)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct sockaddr_un	 sun;

	make_sin(&sin, "10.1.2.3", 5000);
	assert_true(match("10.0.0.0/8", (struct sockaddr *)&sin));
	assert_true(match("10.1.2.3", (struct sockaddr *)&sin));
	assert_true(match("0.0.0.0/0", (struct sockaddr *)&sin));
	assert_true(match("10.1.0.0/20", (struct sockaddr *)&sin));
	assert_false(match("10.1.16.0/20", (struct sockaddr *)&sin));
	assert_false(match("10.1.2.2", (struct sockaddr *)&sin));
	assert_false(match("11.0.0.0/8", (struct sockaddr *)&sin));
	assert_false(match("::/0", (struct sockaddr *)&sin));

	make_sin(&sin, "192.168.1.200", 1);
	assert_true(match("192.168.1.128/25", (struct sockaddr *)&sin));
	assert_false(match("192.168.1.0/25", (struct sockaddr *)&sin));
	assert_true(match("192.168.1.192/27", (struct sockaddr *)&sin));
	assert_false(match("192.168.1.224/27", (struct sockaddr *)&sin));

	make_sin6(&sin6, "2001:db8::5", 80);
	assert_true(match("2001:db8::/32", (struct sockaddr *)&sin6));
	assert_true(match("::/0", (struct sockaddr *)&sin6));
	assert_true(match("2001:db8::4/127", (struct sockaddr *)&sin6));
	assert_false(match("2001:db8::6/127", (struct sockaddr *)&sin6));
	assert_false(match("2001:db9::/32", (struct sockaddr *)&sin6));
	assert_false(match("0.0.0.0/0", (struct sockaddr *)&sin6));

	/* An IPv4-mapped client is an IPv4 client. */
	make_sin6(&sin6, "::ffff:127.0.0.1", 80);
	assert_true(match("127.0.0.0/8", (struct sockaddr *)&sin6));
	assert_true(match("::ffff:127.0.0.1", (struct sockaddr *)&sin6));
	assert_false(match("::/0", (struct sockaddr *)&sin6));
	assert_false(match("128.0.0.0/1", (struct sockaddr *)&sin6));

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	assert_false(match("0.0.0.0/0", (struct sockaddr *)&sun));
	assert_false(match("::/0", (struct sockaddr *)&sun));
}

/* format_duration picks the largest exact unit; parsing reads it back. */
static void
test_format_duration_is_exact_and_parses_back(void **state)
{
	static const struct {
		long long	 ms;
		const char	*text;
	} cases[] = {
		{ 0, "0s" },
		{ 1, "1ms" },
		{ 500, "500ms" },
		{ 1500, "1500ms" },
		{ 3000, "3s" },
		{ 90000, "90s" },
		{ 600000, "10m" },
		{ 3600000, "1h" },
		{ 5400000, "90m" },
		{ 604800000, "168h" },
		{ 3723004, "3723004ms" }
	};
	char		 buf[32];
	long long	 v;
	char		*cause = NULL;
	size_t		 i;

	for (i = 0; i < nitems(cases); i++) {
		assert_string_equal(format_duration(cases[i].ms, buf,
		    sizeof buf), cases[i].text);
		assert_int_equal(parse_duration_string(buf, &v, &cause), 0);
		assert_int_equal(v, cases[i].ms);
	}
}

/* format_size picks the largest exact unit; parsing reads it back. */
static void
test_format_size_is_exact_and_parses_back(void **state)
{
	static const struct {
		long long	 bytes;
		const char	*text;
	} cases[] = {
		{ 0, "0" },
		{ 1000, "1000" },
		{ 1536, "1536" },
		{ 4096, "4k" },
		{ 65536, "64k" },
		{ 1048576, "1m" },
		{ 1572864, "1536k" },
		{ 67108864, "64m" }
	};
	char		 buf[32];
	long long	 v;
	char		*cause = NULL;
	size_t		 i;

	for (i = 0; i < nitems(cases); i++) {
		assert_string_equal(format_size(cases[i].bytes, buf,
		    sizeof buf), cases[i].text);
		assert_int_equal(parse_size_string(buf, &v, &cause), 0);
		assert_int_equal(v, cases[i].bytes);
	}
}

/* format_sockaddr: every family, mapped addresses, short lengths. */
static void
test_format_sockaddr_every_family(void **state)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct sockaddr_un	 sun;
	struct sockaddr		 sa;
	char			 buf[128];
	socklen_t		 len;

	make_sin(&sin, "203.0.113.7", 51544);
	assert_string_equal(format_sockaddr((struct sockaddr *)&sin,
	    sizeof sin, buf, sizeof buf), "203.0.113.7:51544");
	assert_string_equal(format_sockaddr((struct sockaddr *)&sin,
	    sizeof sin - 1, buf, sizeof buf), "unknown");

	make_sin6(&sin6, "2001:db8::1", 8080);
	assert_string_equal(format_sockaddr((struct sockaddr *)&sin6,
	    sizeof sin6, buf, sizeof buf), "[2001:db8::1]:8080");
	make_sin6(&sin6, "::ffff:127.0.0.1", 9);
	assert_string_equal(format_sockaddr((struct sockaddr *)&sin6,
	    sizeof sin6, buf, sizeof buf), "127.0.0.1:9");

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, "/run/web.sock");
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    strlen(sun.sun_path) + 1);
	assert_string_equal(format_sockaddr((struct sockaddr *)&sun, len,
	    buf, sizeof buf), "unix:/run/web.sock");
	assert_string_equal(format_sockaddr((struct sockaddr *)&sun,
	    sizeof sun, buf, sizeof buf), "unix:/run/web.sock");
	assert_string_equal(format_sockaddr((struct sockaddr *)&sun,
	    offsetof(struct sockaddr_un, sun_path), buf, sizeof buf),
	    "unix:");
	memcpy(sun.sun_path, "\0abstract", 9);
	assert_string_equal(format_sockaddr((struct sockaddr *)&sun,
	    offsetof(struct sockaddr_un, sun_path) + 9, buf, sizeof buf),
	    "unix:@abstract");

	memset(&sa, 0, sizeof sa);
	sa.sa_family = AF_APPLETALK;
	assert_string_equal(format_sockaddr(&sa, sizeof sa, buf, sizeof buf),
	    "unknown");
	assert_string_equal(format_sockaddr(NULL, 0, buf, sizeof buf),
	    "unknown");

	/* A small buffer is truncated, never overrun. */
	make_sin(&sin, "203.0.113.7", 51544);
	assert_string_equal(format_sockaddr((struct sockaddr *)&sin,
	    sizeof sin, buf, 8), "203.0.1");
}

/* sockaddr_equal: family, port, address; unix by path, unnamed never. */
static void
test_sockaddr_equal_endpoints(void **state)
{
	struct sockaddr_in	 a4, b4;
	struct sockaddr_in6	 a6, b6;
	struct sockaddr_un	 au, bu;
	socklen_t		 off = offsetof(struct sockaddr_un, sun_path);

	memset(&a4, 0, sizeof a4);
	a4.sin_family = AF_INET;
	a4.sin_port = htons(80);
	inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
	b4 = a4;
	assert_true(sockaddr_equal((struct sockaddr *)&a4, sizeof a4,
	    (struct sockaddr *)&b4, sizeof b4));
	b4.sin_port = htons(81);
	assert_false(sockaddr_equal((struct sockaddr *)&a4, sizeof a4,
	    (struct sockaddr *)&b4, sizeof b4));
	b4.sin_port = htons(80);
	inet_pton(AF_INET, "127.0.0.2", &b4.sin_addr);
	assert_false(sockaddr_equal((struct sockaddr *)&a4, sizeof a4,
	    (struct sockaddr *)&b4, sizeof b4));
	assert_false(sockaddr_equal((struct sockaddr *)&a4, 0,
	    (struct sockaddr *)&a4, sizeof a4));

	memset(&a6, 0, sizeof a6);
	a6.sin6_family = AF_INET6;
	a6.sin6_port = htons(80);
	inet_pton(AF_INET6, "::1", &a6.sin6_addr);
	b6 = a6;
	assert_true(sockaddr_equal((struct sockaddr *)&a6, sizeof a6,
	    (struct sockaddr *)&b6, sizeof b6));
	b6.sin6_scope_id = 2;
	assert_false(sockaddr_equal((struct sockaddr *)&a6, sizeof a6,
	    (struct sockaddr *)&b6, sizeof b6));
	assert_false(sockaddr_equal((struct sockaddr *)&a4, sizeof a4,
	    (struct sockaddr *)&a6, sizeof a6));

	memset(&au, 0, sizeof au);
	au.sun_family = AF_UNIX;
	strcpy(au.sun_path, "/run/x.sock");
	bu = au;
	/* With and without the final NUL counted. */
	assert_true(sockaddr_equal((struct sockaddr *)&au,
	    off + strlen(au.sun_path) + 1, (struct sockaddr *)&bu,
	    off + strlen(bu.sun_path)));
	strcpy(bu.sun_path, "/run/y.sock");
	assert_false(sockaddr_equal((struct sockaddr *)&au, sizeof au,
	    (struct sockaddr *)&bu, sizeof bu));
	/* Unnamed sockets are never the same place. */
	memset(au.sun_path, 0, sizeof au.sun_path);
	bu = au;
	assert_false(sockaddr_equal((struct sockaddr *)&au, off,
	    (struct sockaddr *)&bu, off));
	assert_false(sockaddr_equal((struct sockaddr *)&au, sizeof au,
	    (struct sockaddr *)&bu, sizeof bu));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_accepts_units_and_combinations),
		cmocka_unit_test(test_duration_rejects_garbage_and_overflow),
		cmocka_unit_test(test_size_accepts_bytes_k_and_m),
		cmocka_unit_test(test_size_rejects_garbage_and_overflow),
		cmocka_unit_test(test_address_parses_ipv4_and_ipv6_literals),
		cmocka_unit_test(test_address_star_only_in_listen),
		cmocka_unit_test(test_address_parses_unix_paths),
		cmocka_unit_test(test_address_host_names_only_for_backends),
		cmocka_unit_test(test_address_rejects_malformed),
		cmocka_unit_test(test_address_equal_compares_sockets),
		cmocka_unit_test(test_cidr_parses_networks_and_bare_addresses),
		cmocka_unit_test(test_cidr_rejects_bad_prefixes_and_host_bits),
		cmocka_unit_test(test_cidr_match_prefixes_and_families),
		cmocka_unit_test(test_format_duration_is_exact_and_parses_back),
		cmocka_unit_test(test_format_size_is_exact_and_parses_back),
		cmocka_unit_test(test_format_sockaddr_every_family),
		cmocka_unit_test(test_sockaddr_equal_endpoints)
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
