/*
 * Unit tests for acl.c: allow/deny semantics (deny first, IPv4-mapped
 * IPv6 as IPv4, unix clients not subject) and the connection counts per
 * address behind max_connections_per_ip.
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

static void	 make_addr(struct sockaddr_storage *, const char *);
static void	 set_lists(struct listener_conf *, const char *const *,
		     const char *const *);
static void	 free_lists(struct listener_conf *);
static int	 allowed(const struct listener_conf *, const char *);

/* A socket address for "1.2.3.4", "::1" or "unix:/path". */
static void
make_addr(struct sockaddr_storage *ss, const char *text)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_un	*sun = (struct sockaddr_un *)ss;

	memset(ss, 0, sizeof *ss);
	if (strncmp(text, "unix:", 5) == 0) {
		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof sun->sun_path, "%s", text + 5);
	} else if (strchr(text, ':') != NULL) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(1234);
		assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr),
		    1);
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(1234);
		assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
	}
}

/* Fill a listener's allow and deny lists (NULL-terminated). */
static void
set_lists(struct listener_conf *lc, const char *const *allow,
    const char *const *deny)
{
	char	*cause = NULL;
	size_t	 i;

	memset(lc, 0, sizeof *lc);
	for (i = 0; allow[i] != NULL; i++)
		;
	lc->allow = calloc(i + 1, sizeof *lc->allow);
	for (i = 0; allow[i] != NULL; i++) {
		assert_int_equal(parse_cidr(allow[i], &lc->allow[i], &cause),
		    0);
		lc->nallow++;
	}
	for (i = 0; deny[i] != NULL; i++)
		;
	lc->deny = calloc(i + 1, sizeof *lc->deny);
	for (i = 0; deny[i] != NULL; i++) {
		assert_int_equal(parse_cidr(deny[i], &lc->deny[i], &cause),
		    0);
		lc->ndeny++;
	}
}

/* Free what set_lists made. */
static void
free_lists(struct listener_conf *lc)
{
	size_t	 i;

	for (i = 0; i < lc->nallow; i++)
		cidr_free(&lc->allow[i]);
	for (i = 0; i < lc->ndeny; i++)
		cidr_free(&lc->deny[i]);
	free(lc->allow);
	free(lc->deny);
}

/* Does the listener serve this client? */
static int
allowed(const struct listener_conf *lc, const char *text)
{
	struct sockaddr_storage	 ss;

	make_addr(&ss, text);
	return (acl_check(lc, (struct sockaddr *)&ss) == 0);
}

static void
test_empty_lists_allow_everyone(void **state)
{
	static const char *const none[] = { NULL };
	struct listener_conf	 lc;

	set_lists(&lc, none, none);
	assert_true(allowed(&lc, "127.0.0.3"));
	assert_true(allowed(&lc, "::1"));
	assert_true(allowed(&lc, "unix:/run/x.sock"));
	free_lists(&lc);
}

static void
test_deny_is_checked_first(void **state)
{
	static const char *const allow[] = { "127.0.0.0/8", "::1", NULL };
	static const char *const deny[] = { "127.0.0.3", NULL };
	struct listener_conf	 lc;

	set_lists(&lc, allow, deny);
	assert_true(allowed(&lc, "127.0.0.2"));
	assert_false(allowed(&lc, "127.0.0.3"));	/* in both */
	assert_true(allowed(&lc, "::1"));
	assert_false(allowed(&lc, "::2"));		/* /128 */
	assert_false(allowed(&lc, "10.0.0.1"));		/* in neither */
	free_lists(&lc);
}

static void
test_deny_alone_refuses_only_its_networks(void **state)
{
	static const char *const none[] = { NULL };
	static const char *const deny[] = { "127.0.0.3/32", "::1", NULL };
	struct listener_conf	 lc;

	set_lists(&lc, none, deny);
	assert_true(allowed(&lc, "127.0.0.2"));
	assert_false(allowed(&lc, "127.0.0.3"));
	assert_false(allowed(&lc, "::1"));
	assert_true(allowed(&lc, "::2"));
	free_lists(&lc);
}

static void
test_ipv4_mapped_ipv6_is_checked_as_ipv4(void **state)
{
	static const char *const allow[] = { "127.0.0.0/8", NULL };
	static const char *const deny[] = { "127.0.0.3", NULL };
	static const char *const v6[] = { "::ffff:0:0/96", NULL };
	static const char *const none[] = { NULL };
	struct listener_conf	 lc;

	set_lists(&lc, allow, deny);
	assert_true(allowed(&lc, "::ffff:127.0.0.2"));
	assert_false(allowed(&lc, "::ffff:127.0.0.3"));
	assert_false(allowed(&lc, "::ffff:10.0.0.1"));
	free_lists(&lc);

	/* A mapped network in the list is IPv4 too (parse.c). */
	set_lists(&lc, v6, none);
	assert_true(allowed(&lc, "10.1.2.3"));
	assert_true(allowed(&lc, "::ffff:10.1.2.3"));
	assert_false(allowed(&lc, "::1"));
	free_lists(&lc);
}

static void
test_unix_clients_are_not_subject(void **state)
{
	static const char *const allow[] = { "127.0.0.2", NULL };
	static const char *const deny[] = { "0.0.0.0/0", "::/0", NULL };
	struct listener_conf	 lc;

	set_lists(&lc, allow, deny);
	assert_true(allowed(&lc, "unix:"));
	assert_true(allowed(&lc, "unix:/run/x.sock"));
	assert_false(allowed(&lc, "127.0.0.2"));
	free_lists(&lc);
}

static void
test_sources_cap_per_address(void **state)
{
	struct acl_sources	*t = acl_sources_new();
	struct sockaddr_storage	 a, a6, b, m, u;

	make_addr(&a, "127.0.0.2");
	make_addr(&m, "::ffff:127.0.0.2");
	make_addr(&b, "127.0.0.3");
	make_addr(&a6, "::1");
	make_addr(&u, "unix:/run/x.sock");

	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&a, 2), 1);
	/* The IPv4-mapped form is the same source. */
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&m, 2), 1);
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&a, 2), -1);
	assert_int_equal(acl_sources_count(t, (struct sockaddr *)&a), 2);
	/* Others are not affected. */
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&b, 2), 1);
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&a6, 2), 1);
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&a6, 2), 1);
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&a6, 2), -1);
	/* Unix clients and "no cap" are never counted. */
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&u, 1), 0);
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&b, 0), 0);
	assert_int_equal(acl_sources_size(t), 3);

	/* A freed slot can be taken again. */
	acl_sources_release(t, (struct sockaddr *)&m);
	assert_int_equal(acl_sources_take(t, (struct sockaddr *)&a, 2), 1);
	acl_sources_release(t, (struct sockaddr *)&a);
	acl_sources_release(t, (struct sockaddr *)&a);
	acl_sources_release(t, (struct sockaddr *)&b);
	acl_sources_release(t, (struct sockaddr *)&a6);
	acl_sources_release(t, (struct sockaddr *)&a6);
	assert_int_equal(acl_sources_size(t), 0);
	assert_int_equal(acl_sources_count(t, (struct sockaddr *)&a), 0);
	acl_sources_free(t);
}

static void
test_sources_many_addresses(void **state)
{
	struct acl_sources	*t = acl_sources_new();
	struct sockaddr_in6	 sin6;
	int			 i;

	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::", &sin6.sin6_addr);
	for (i = 0; i < 20000; i++) {
		sin6.sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
		sin6.sin6_addr.s6_addr[15] = (uint8_t)i;
		assert_int_equal(acl_sources_take(t,
		    (struct sockaddr *)&sin6, 1), 1);
	}
	assert_int_equal(acl_sources_size(t), 20000);
	for (i = 0; i < 20000; i++) {
		sin6.sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
		sin6.sin6_addr.s6_addr[15] = (uint8_t)i;
		assert_int_equal(acl_sources_take(t,
		    (struct sockaddr *)&sin6, 1), -1);
	}
	/* Half released, then freed with the rest still counted. */
	for (i = 0; i < 20000; i += 2) {
		sin6.sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
		sin6.sin6_addr.s6_addr[15] = (uint8_t)i;
		acl_sources_release(t, (struct sockaddr *)&sin6);
	}
	assert_int_equal(acl_sources_size(t), 10000);
	acl_sources_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_lists_allow_everyone),
		cmocka_unit_test(test_deny_is_checked_first),
		cmocka_unit_test(test_deny_alone_refuses_only_its_networks),
		cmocka_unit_test(test_ipv4_mapped_ipv6_is_checked_as_ipv4),
		cmocka_unit_test(test_unix_clients_are_not_subject),
		cmocka_unit_test(test_sources_cap_per_address),
		cmocka_unit_test(test_sources_many_addresses)
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
