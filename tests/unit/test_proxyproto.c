/*
 * Unit tests for proxyproto.c: the headers send_proxy writes, and the
 * strict decoding of accept_proxy, fed valid, malformed, truncated and
 * oversized input.
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

/* The version 2 signature. */
static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static void	 make_sin(struct sockaddr_storage *, const char *, uint16_t);
static void	 make_sin6(struct sockaddr_storage *, const char *,
		     uint16_t);
static void	 make_sun(struct sockaddr_storage *, const char *);
static int	 decode(const void *, size_t, struct proxyproto *, size_t *);
static void	 expect_v1(const char *, const char *, uint16_t,
		     const char *, uint16_t);
static void	 expect_bad(const void *, size_t, const char *);
static void	 expect_bad_v1(const char *, const char *);
static void	 expect_every_prefix_incomplete(const uint8_t *, size_t);
static size_t	 v2_header(uint8_t *, uint8_t, uint8_t, size_t);
static void	 check_addr(const struct sockaddr_storage *, socklen_t,
		     const char *, uint16_t);

/* An IPv4 socket address. */
static void
make_sin(struct sockaddr_storage *ss, const char *host, uint16_t port)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof *ss);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, host, &sin->sin_addr), 1);
}

/* An IPv6 socket address. */
static void
make_sin6(struct sockaddr_storage *ss, const char *host, uint16_t port)
{
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, host, &sin6->sin6_addr), 1);
}

/* A unix socket address. */
static void
make_sun(struct sockaddr_storage *ss, const char *path)
{
	struct sockaddr_un	*sun = (struct sockaddr_un *)ss;

	memset(ss, 0, sizeof *ss);
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof sun->sun_path, "%s", path);
}

/*
 * Decode from an exactly-sized heap copy, so that the sanitizers catch
 * any read past the end.
 */
static int
decode(const void *buf, size_t len, struct proxyproto *pp, size_t *used)
{
	const char	*why = NULL;
	uint8_t		*copy;
	int		 r;

	copy = malloc(len == 0 ? 1 : len);
	assert_non_null(copy);
	memcpy(copy, buf, len);
	r = proxyproto_decode(copy, len, pp, used, &why);
	free(copy);
	if (r == -1)
		assert_non_null(why);
	else
		assert_null(why);
	if (r == 1)
		assert_true(*used > 0 && *used <= len);
	return (r);
}

/* A socket address that must hold host and port. */
static void
check_addr(const struct sockaddr_storage *ss, socklen_t len,
    const char *host, uint16_t port)
{
	char	 want[128], got[128];

	if (strchr(host, ':') != NULL)
		snprintf(want, sizeof want, "[%s]:%u", host, port);
	else
		snprintf(want, sizeof want, "%s:%u", host, port);
	format_sockaddr((const struct sockaddr *)ss, len, got, sizeof got);
	assert_string_equal(got, want);
}

/* A v1 line that must decode to these addresses. */
static void
expect_v1(const char *line, const char *src, uint16_t sport,
    const char *dst, uint16_t dport)
{
	struct proxyproto	 pp;
	size_t			 used;

	if (decode(line, strlen(line), &pp, &used) != 1) {
		print_error("not decoded: \"%s\"\n", line);
		fail();
	}
	assert_int_equal(used, strlen(line));
	assert_int_equal(pp.version, 1);
	assert_false(pp.local);
	check_addr(&pp.src, pp.srclen, src, sport);
	check_addr(&pp.dst, pp.dstlen, dst, dport);
}

/* Bytes that must be refused, for a reason containing word. */
static void
expect_bad(const void *buf, size_t len, const char *word)
{
	struct proxyproto	 pp;
	const char		*why = NULL;
	size_t			 used;
	uint8_t			*copy;
	int			 r;

	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, buf, len);
	r = proxyproto_decode(copy, len, &pp, &used, &why);
	free(copy);
	if (r != -1) {
		print_error("accepted (%d): \"%.*s\"\n", r, (int)len,
		    (const char *)buf);
		fail();
	}
	if (word != NULL && strstr(why, word) == NULL) {
		print_error("reason \"%s\" lacks \"%s\"\n", why, word);
		fail();
	}
}

/* A v1 line that must be refused. */
static void
expect_bad_v1(const char *line, const char *word)
{
	expect_bad(line, strlen(line), word);
}

/* Every proper prefix of a valid header is "incomplete", never wrong. */
static void
expect_every_prefix_incomplete(const uint8_t *buf, size_t len)
{
	struct proxyproto	 pp;
	size_t			 i, used;

	for (i = 0; i < len; i++) {
		if (decode(buf, i, &pp, &used) != 0) {
			print_error("prefix of %zu bytes not incomplete\n", i);
			fail();
		}
	}
}

/* A v2 header start: signature, command, family and length. */
static size_t
v2_header(uint8_t *buf, uint8_t cmd, uint8_t fam, size_t len)
{
	memcpy(buf, sig, sizeof sig);
	buf[12] = cmd;
	buf[13] = fam;
	buf[14] = (uint8_t)(len >> 8);
	buf[15] = (uint8_t)(len & 0xff);
	return (16);
}

static void
test_encode_v1_tcp4(void **state)
{
	struct sockaddr_storage	 src, dst;
	uint8_t			 buf[PROXYPROTO_ENCODE_MAX];
	const char		*want =
	    "PROXY TCP4 127.0.0.2 127.0.0.1 40000 8080\r\n";
	int			 n;

	make_sin(&src, "127.0.0.2", 40000);
	make_sin(&dst, "127.0.0.1", 8080);
	n = proxyproto_encode(SEND_PROXY_V1, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, buf, sizeof buf);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, strlen(want));
}

static void
test_encode_v1_tcp6_and_mixed_families(void **state)
{
	struct sockaddr_storage	 src, dst;
	uint8_t			 buf[PROXYPROTO_ENCODE_MAX];
	const char		*want;
	int			 n;

	make_sin6(&src, "2001:db8::7", 1);
	make_sin6(&dst, "::1", 65535);
	want = "PROXY TCP6 2001:db8::7 ::1 1 65535\r\n";
	n = proxyproto_encode(SEND_PROXY_V1, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, buf, sizeof buf);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, strlen(want));

	/* An IPv4 client on an IPv6 address: written IPv4-mapped. */
	make_sin(&src, "192.0.2.1", 5);
	want = "PROXY TCP6 ::ffff:192.0.2.1 ::1 5 65535\r\n";
	n = proxyproto_encode(SEND_PROXY_V1, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, buf, sizeof buf);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, strlen(want));

	/* Both IPv4-mapped: plain TCP4. */
	make_sin6(&src, "::ffff:192.0.2.1", 5);
	make_sin6(&dst, "::ffff:127.0.0.1", 80);
	want = "PROXY TCP4 192.0.2.1 127.0.0.1 5 80\r\n";
	n = proxyproto_encode(SEND_PROXY_V1, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, buf, sizeof buf);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, strlen(want));
}

static void
test_encode_unix_client_is_unknown_or_local(void **state)
{
	struct sockaddr_storage	 src, dst;
	uint8_t			 buf[PROXYPROTO_ENCODE_MAX], want[16];
	int			 n;

	make_sun(&src, "");
	make_sun(&dst, "/run/x.sock");
	n = proxyproto_encode(SEND_PROXY_V1, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, buf, sizeof buf);
	assert_int_equal(n, 15);
	assert_memory_equal(buf, "PROXY UNKNOWN\r\n", 15);

	/* No destination known: also UNKNOWN. */
	make_sin(&src, "127.0.0.2", 1);
	n = proxyproto_encode(SEND_PROXY_V1, (struct sockaddr *)&src, NULL,
	    buf, sizeof buf);
	assert_int_equal(n, 15);

	make_sun(&src, "");
	n = proxyproto_encode(SEND_PROXY_V2, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, buf, sizeof buf);
	v2_header(want, 0x20, 0x00, 0);
	assert_int_equal(n, 16);
	assert_memory_equal(buf, want, 16);
}

static void
test_encode_v2_tcp4_and_tcp6_bytes(void **state)
{
	struct sockaddr_storage	 src, dst;
	uint8_t			 buf[PROXYPROTO_ENCODE_MAX], want[64];
	static const uint8_t	 a4[12] = {
		127, 0, 0, 2, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90
	};
	size_t			 off;
	int			 n;

	make_sin(&src, "127.0.0.2", 40000);
	make_sin(&dst, "127.0.0.1", 8080);
	n = proxyproto_encode(SEND_PROXY_V2, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, buf, sizeof buf);
	off = v2_header(want, 0x21, 0x11, 12);
	memcpy(want + off, a4, sizeof a4);
	assert_int_equal(n, 28);
	assert_memory_equal(buf, want, 28);

	make_sin6(&src, "::1", 1);
	make_sin6(&dst, "2001:db8::1", 2);
	n = proxyproto_encode(SEND_PROXY_V2, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, buf, sizeof buf);
	off = v2_header(want, 0x21, 0x21, 36);
	memset(want + off, 0, 32);
	want[off + 15] = 1;
	inet_pton(AF_INET6, "2001:db8::1", want + off + 16);
	want[off + 32] = 0;
	want[off + 33] = 1;
	want[off + 34] = 0;
	want[off + 35] = 2;
	assert_int_equal(n, 52);
	assert_memory_equal(buf, want, 52);
}

static void
test_encode_refuses_small_buffer_and_none(void **state)
{
	struct sockaddr_storage	 src, dst;
	uint8_t			 buf[PROXYPROTO_ENCODE_MAX];

	make_sin(&src, "127.0.0.2", 40000);
	make_sin(&dst, "127.0.0.1", 8080);
	assert_int_equal(proxyproto_encode(SEND_PROXY_V1,
	    (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, 20), -1);
	assert_int_equal(proxyproto_encode(SEND_PROXY_V2,
	    (struct sockaddr *)&src, (struct sockaddr *)&dst, buf, 27), -1);
	assert_int_equal(proxyproto_encode(SEND_PROXY_NONE,
	    (struct sockaddr *)&src, (struct sockaddr *)&dst, buf,
	    sizeof buf), -1);
}

static void
test_encode_decode_round_trip(void **state)
{
	static const struct {
		const char	*src;
		uint16_t	 sport;
		const char	*dst;
		uint16_t	 dport;
	} cases[] = {
		{ "127.0.0.2", 0, "127.0.0.1", 65535 },
		{ "255.255.255.255", 65535, "0.0.0.0", 0 },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535,
		    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535 },
		{ "::1", 12345, "fe80::1", 443 }
	};
	struct sockaddr_storage	 src, dst;
	struct proxyproto	 pp;
	uint8_t			 buf[PROXYPROTO_ENCODE_MAX];
	size_t			 i, used;
	int			 n, v;

	for (i = 0; i < nitems(cases); i++) {
		if (strchr(cases[i].src, ':') != NULL) {
			make_sin6(&src, cases[i].src, cases[i].sport);
			make_sin6(&dst, cases[i].dst, cases[i].dport);
		} else {
			make_sin(&src, cases[i].src, cases[i].sport);
			make_sin(&dst, cases[i].dst, cases[i].dport);
		}
		for (v = SEND_PROXY_V1; v <= SEND_PROXY_V2; v++) {
			n = proxyproto_encode((enum send_proxy)v,
			    (struct sockaddr *)&src, (struct sockaddr *)&dst,
			    buf, sizeof buf);
			assert_true(n > 0);
			if (v == SEND_PROXY_V1)
				assert_true(n <= PROXYPROTO_V1_MAX);
			assert_int_equal(decode(buf, (size_t)n, &pp, &used),
			    1);
			assert_int_equal(used, n);
			assert_int_equal(pp.version, v);
			check_addr(&pp.src, pp.srclen, cases[i].src,
			    cases[i].sport);
			check_addr(&pp.dst, pp.dstlen, cases[i].dst,
			    cases[i].dport);
			expect_every_prefix_incomplete(buf, (size_t)n);
		}
	}
}

static void
test_v1_valid_lines(void **state)
{
	struct proxyproto	 pp;
	const char		*s;
	size_t			 used;

	expect_v1("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
	    "192.0.2.1", 56324, "198.51.100.2", 443);
	expect_v1("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n",
	    "2001:db8::1", 0, "10.0.0.1", 65535);

	/* The bytes after the header are the client's, not the header's. */
	s = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.0\r\n\r\n";
	assert_int_equal(decode(s, strlen(s), &pp, &used), 1);
	assert_int_equal(used, strlen("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));

	/* UNKNOWN: whatever follows it on the line is ignored. */
	s = "PROXY UNKNOWN\r\n";
	assert_int_equal(decode(s, strlen(s), &pp, &used), 1);
	assert_true(pp.local);
	assert_int_equal(used, strlen(s));
	s = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
	assert_int_equal(decode(s, strlen(s), &pp, &used), 1);
	assert_true(pp.local);
}

static void
test_v1_malformed_lines_are_refused(void **state)
{
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "printable");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "CR");
	expect_bad_v1("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "protocol");
	expect_bad_v1("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol");
	expect_bad_v1("PROXY UNKNOWNX\r\n", "protocol");
	expect_bad_v1("PROXY \r\n", "malformed");
	expect_bad_v1("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed");
	expect_bad_v1("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "malformed");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4\r\n", "malformed");
	expect_bad_v1("PROXY TCP4\r\n", "malformed");
	expect_bad_v1("PROXY TCP4 ::1 ::1 1 2\r\n", "IPv4");
	expect_bad_v1("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "IPv6");
	expect_bad_v1("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "IPv4");
	expect_bad_v1("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "IPv4");
	expect_bad_v1("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "IPv4");
	expect_bad_v1("PROXY TCP4 a.b.c.d 5.6.7.8 1 2\r\n", "IPv4");
	expect_bad_v1("PROXY TCP6 ::1::2 ::1 1 2\r\n", "IPv6");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1x 2\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 0000001\r\n", "port");
	expect_bad_v1("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "printable");
	expect_bad_v1("PROXY TCP4 1.2.3.4 5.6.7.\xe9 1 2\r\n", "printable");
	expect_bad("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33, "printable");
	expect_bad_v1("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "signature");
	expect_bad_v1("GET / HTTP/1.1\r\n", "signature");
	expect_bad_v1("G", "signature");
	expect_bad_v1("PROXX", "signature");
}

static void
test_v1_length_limit_is_107_bytes(void **state)
{
	struct proxyproto	 pp;
	char			 line[256];
	size_t			 used, pad;

	/* 107 bytes in all, CRLF included: the longest allowed. */
	pad = PROXYPROTO_V1_MAX - strlen("PROXY UNKNOWN ") - 2;
	snprintf(line, sizeof line, "PROXY UNKNOWN %.*s\r\n", (int)pad,
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(strlen(line), PROXYPROTO_V1_MAX);
	assert_int_equal(decode(line, strlen(line), &pp, &used), 1);
	assert_int_equal(used, PROXYPROTO_V1_MAX);

	/* One byte more: refused, whether the CRLF came or not. */
	snprintf(line, sizeof line, "PROXY UNKNOWN %.*sa\r\n", (int)pad,
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	expect_bad(line, strlen(line), "107");
	expect_bad(line, PROXYPROTO_V1_MAX, "107");
	expect_bad(line, PROXYPROTO_V1_MAX + 1, "107");

	/* Short of 107 bytes without CRLF: wait for more. */
	assert_int_equal(decode(line, PROXYPROTO_V1_MAX - 1, &pp, &used), 0);
	memset(line, 'a', sizeof line);
	memcpy(line, "PROXY ", 6);
	expect_bad(line, sizeof line, "107");
}

static void
test_v2_local_unspec_and_unix_carry_no_address(void **state)
{
	struct proxyproto	 pp;
	uint8_t			 buf[16 + 216 + 8];
	size_t			 used, n;

	/* LOCAL (a balancer's own health check). */
	n = v2_header(buf, 0x20, 0x00, 0);
	assert_int_equal(decode(buf, n, &pp, &used), 1);
	assert_true(pp.local);
	assert_int_equal(pp.version, 2);
	assert_int_equal(used, 16);

	/* LOCAL ignores the family, and its block is skipped whole. */
	n = v2_header(buf, 0x20, 0xff, 5);
	memset(buf + n, 0xee, 5);
	assert_int_equal(decode(buf, n + 5, &pp, &used), 1);
	assert_true(pp.local);
	assert_int_equal(used, 21);

	/* PROXY over UNSPEC, or from a unix client. */
	n = v2_header(buf, 0x21, 0x00, 0);
	assert_int_equal(decode(buf, n, &pp, &used), 1);
	assert_true(pp.local);
	n = v2_header(buf, 0x21, 0x31, 216);
	memset(buf + n, 0, 216);
	assert_int_equal(decode(buf, n + 216, &pp, &used), 1);
	assert_true(pp.local);
	assert_int_equal(used, 16 + 216);
}

static void
test_v2_tlvs_are_skipped(void **state)
{
	struct proxyproto	 pp;
	uint8_t			 buf[128];
	size_t			 used, n;
	static const uint8_t	 a4[12] = {
		192, 0, 2, 1, 127, 0, 0, 1, 0x01, 0xbb, 0x00, 0x50
	};
	static const uint8_t	 tlvs[] = {
		0x01, 0x00, 0x02, 'h', '2',		/* ALPN */
		0x04, 0x00, 0x03, 0, 0, 0,		/* NOOP */
		0x20, 0x00, 0x00,			/* empty SSL */
		0x03, 0x00, 0x04, 1, 2, 3, 4		/* CRC32C */
	};

	n = v2_header(buf, 0x21, 0x11, sizeof a4 + sizeof tlvs);
	memcpy(buf + n, a4, sizeof a4);
	memcpy(buf + n + sizeof a4, tlvs, sizeof tlvs);
	n += sizeof a4 + sizeof tlvs;
	buf[n] = 'X';	/* the client's first byte */
	assert_int_equal(decode(buf, n + 1, &pp, &used), 1);
	assert_int_equal(used, n);
	check_addr(&pp.src, pp.srclen, "192.0.2.1", 443);
	check_addr(&pp.dst, pp.dstlen, "127.0.0.1", 80);
	expect_every_prefix_incomplete(buf, n);
}

static void
test_v2_malformed_headers_are_refused(void **state)
{
	uint8_t			 buf[128];
	size_t			 n;
	static const uint8_t	 a4[12] = {
		192, 0, 2, 1, 127, 0, 0, 1, 0x01, 0xbb, 0x00, 0x50
	};

	memset(buf, 0, sizeof buf);
	/* Version 1 in the binary format, or version 3. */
	n = v2_header(buf, 0x11, 0x11, 12);
	memcpy(buf + n, a4, 12);
	expect_bad(buf, n + 12, "version");
	buf[12] = 0x31;
	expect_bad(buf, n + 12, "version");

	/* Commands other than LOCAL (0) and PROXY (1). */
	buf[12] = 0x22;
	expect_bad(buf, n + 12, "command");
	buf[12] = 0x2f;
	expect_bad(buf, n + 12, "command");

	/* Families and transports that are not TCP over IP or unix. */
	buf[12] = 0x21;
	buf[13] = 0x12;		/* UDP over IPv4 */
	expect_bad(buf, n + 12, "family");
	buf[13] = 0x41;
	expect_bad(buf, n + 12, "family");
	buf[13] = 0x10;
	expect_bad(buf, n + 12, "family");

	/* A length too short for the family's addresses. */
	n = v2_header(buf, 0x21, 0x11, 11);
	memcpy(buf + n, a4, 11);
	expect_bad(buf, n + 11, "short");
	n = v2_header(buf, 0x21, 0x21, 35);
	memset(buf + n, 0, 35);
	expect_bad(buf, n + 35, "short");
	n = v2_header(buf, 0x21, 0x31, 215);
	expect_bad(buf, 16, "short");

	/* TLVs that do not fit the block. */
	n = v2_header(buf, 0x21, 0x11, 12 + 2);
	memcpy(buf + n, a4, 12);
	buf[n + 12] = 0x04;
	buf[n + 13] = 0x00;
	expect_bad(buf, n + 14, "truncated TLV");
	n = v2_header(buf, 0x21, 0x11, 12 + 5);
	memcpy(buf + n, a4, 12);
	buf[n + 12] = 0x04;
	buf[n + 13] = 0x00;
	buf[n + 14] = 0x03;	/* three bytes of value, two there */
	expect_bad(buf, n + 17, "TLV longer");
	n = v2_header(buf, 0x21, 0x11, 12 + 3);
	memcpy(buf + n, a4, 12);
	buf[n + 12] = 0x04;
	buf[n + 13] = 0xff;
	buf[n + 14] = 0xff;
	expect_bad(buf, n + 15, "TLV longer");

	/* A signature that goes wrong partway. */
	memcpy(buf, sig, sizeof sig);
	buf[5] = 0x0c;
	expect_bad(buf, 6, "signature");
	expect_bad(buf, 16, "signature");
}

static void
test_v2_truncated_header_waits(void **state)
{
	struct proxyproto	 pp;
	uint8_t			 buf[64];
	size_t			 used, n;

	n = v2_header(buf, 0x21, 0x21, 36);
	memset(buf + n, 1, 36);
	expect_every_prefix_incomplete(buf, n + 36);
	assert_int_equal(decode(buf, n + 36, &pp, &used), 1);
}

static void
test_v2_longest_header(void **state)
{
	struct proxyproto	 pp;
	uint8_t			*buf;
	size_t			 used, n, tlen;

	buf = calloc(1, PROXYPROTO_MAX + 1);
	assert_non_null(buf);
	n = v2_header(buf, 0x21, 0x11, 65535);
	buf[n] = 10;
	buf[n + 4] = 127;
	buf[n + 7] = 1;
	tlen = 65535 - 12 - 3;
	buf[n + 12] = 0x04;
	buf[n + 13] = (uint8_t)(tlen >> 8);
	buf[n + 14] = (uint8_t)(tlen & 0xff);
	assert_int_equal(decode(buf, PROXYPROTO_MAX, &pp, &used), 1);
	assert_int_equal(used, PROXYPROTO_MAX);
	check_addr(&pp.src, pp.srclen, "10.0.0.0", 0);
	assert_int_equal(decode(buf, PROXYPROTO_MAX - 1, &pp, &used), 0);

	/* One byte of TLV too many for the stated length. */
	buf[n + 14] = (uint8_t)((tlen + 1) & 0xff);
	expect_bad(buf, PROXYPROTO_MAX + 1, "TLV longer");
	free(buf);
}

/*
 * Mutations of valid headers: whatever the bytes, decoding answers -1, 0
 * or 1 within the buffer (the sanitizers watch the reads), and refusing
 * a prefix means refusing every longer input too.
 */
static void
test_mutated_headers_never_read_out_of_bounds(void **state)
{
	struct sockaddr_storage	 src, dst;
	struct proxyproto	 pp;
	uint8_t			 base[2][PROXYPROTO_ENCODE_MAX + 8];
	uint8_t			 buf[PROXYPROTO_ENCODE_MAX + 8];
	size_t			 blen[2], used, len, k;
	unsigned int		 seed = 12345;
	int			 i, r, r2, v;

	make_sin6(&src, "2001:db8::1", 40000);
	make_sin6(&dst, "2001:db8::2", 443);
	for (v = 0; v < 2; v++) {
		blen[v] = (size_t)proxyproto_encode(v == 0 ? SEND_PROXY_V1 :
		    SEND_PROXY_V2, (struct sockaddr *)&src,
		    (struct sockaddr *)&dst, base[v], sizeof base[v]);
	}
	for (i = 0; i < 20000; i++) {
		v = i & 1;
		memcpy(buf, base[v], blen[v]);
		len = blen[v];
		for (k = 0; k < 3; k++)
			buf[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
		if (rand_r(&seed) % 4 == 0)
			len = (size_t)rand_r(&seed) % (len + 1);
		r = decode(buf, len, &pp, &used);
		assert_true(r >= -1 && r <= 1);
		if (r == -1 && len < sizeof buf) {
			buf[len] = (uint8_t)rand_r(&seed);
			r2 = decode(buf, len + 1, &pp, &used);
			assert_int_equal(r2, -1);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_v1_tcp4),
		cmocka_unit_test(test_encode_v1_tcp6_and_mixed_families),
		cmocka_unit_test(test_encode_unix_client_is_unknown_or_local),
		cmocka_unit_test(test_encode_v2_tcp4_and_tcp6_bytes),
		cmocka_unit_test(test_encode_refuses_small_buffer_and_none),
		cmocka_unit_test(test_encode_decode_round_trip),
		cmocka_unit_test(test_v1_valid_lines),
		cmocka_unit_test(test_v1_malformed_lines_are_refused),
		cmocka_unit_test(test_v1_length_limit_is_107_bytes),
		cmocka_unit_test(
		    test_v2_local_unspec_and_unix_carry_no_address),
		cmocka_unit_test(test_v2_tlvs_are_skipped),
		cmocka_unit_test(test_v2_malformed_headers_are_refused),
		cmocka_unit_test(test_v2_truncated_header_waits),
		cmocka_unit_test(test_v2_longest_header),
		cmocka_unit_test(
		    test_mutated_headers_never_read_out_of_bounds)
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
