/*
 * Unit tests for balance.c: smooth weighted round robin, weighted least
 * connections, first, and the consistent hash of client addresses (how
 * few clients move when a backend comes or goes, weights, and the same
 * choices in another process).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
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

#define NKEYS		10000	/* clients for the hashing tests */
#define MAXPEERS	16

static void	 make_peers(struct balance_peer *, size_t, const int *);
static uint64_t	 client_key(unsigned int);
static void	 source_choices(const struct balance_peer *, size_t, int *);
static size_t	 count_on(const int *, int);
static void	 print_choices(void);

/* Peers "127.0.0.1:9000", "127.0.0.1:9001", ... all usable. */
static void
make_peers(struct balance_peer *p, size_t n, const int *weights)
{
	char	 text[64];
	size_t	 i;

	memset(p, 0, n * sizeof *p);
	for (i = 0; i < n; i++) {
		snprintf(text, sizeof text, "127.0.0.1:%zu", 9000 + i);
		p[i].hash = balance_hash(text, strlen(text));
		p[i].weight = weights != NULL ? weights[i] : 1;
		p[i].usable = 1;
	}
}

/* The hash key of client number i: 10.a.b.c, as acceptd computes it. */
static uint64_t
client_key(unsigned int i)
{
	struct sockaddr_in	 sin;
	uint64_t		 key = 0;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000 + (i % 1000));
	sin.sin_addr.s_addr = htonl(0x0a000000U + i);
	assert_int_equal(balance_client_key((struct sockaddr *)&sin,
	    sizeof sin, &key), 0);
	return (key);
}

/* The peer each of NKEYS clients goes to. */
static void
source_choices(const struct balance_peer *p, size_t n, int *out)
{
	unsigned int	 i;

	for (i = 0; i < NKEYS; i++) {
		out[i] = balance_source(p, n, client_key(i));
		assert_true(out[i] >= 0 && (size_t)out[i] < n);
	}
}

/* How many clients are on peer k. */
static size_t
count_on(const int *c, int k)
{
	size_t	 i, n = 0;

	for (i = 0; i < NKEYS; i++) {
		if (c[i] == k)
			n++;
	}
	return (n);
}

/* Nginx's example: weights 5, 1, 1 give a a b a c a a, with no burst. */
static void
test_roundrobin_is_smooth(void **state)
{
	static const int	 weights[] = { 5, 1, 1 };
	static const int	 want[] = { 0, 0, 1, 0, 2, 0, 0 };
	struct balance_peer	 p[3];
	size_t			 round, i;

	make_peers(p, 3, weights);
	for (round = 0; round < 3; round++) {
		for (i = 0; i < nitems(want); i++)
			assert_int_equal(balance_roundrobin(p, 3), want[i]);
	}
}

/* 300 connections over 3 equal backends: 100 each, within 10%. */
static void
test_roundrobin_spreads_300_evenly(void **state)
{
	struct balance_peer	 p[3];
	int			 count[3] = { 0, 0, 0 }, i;

	make_peers(p, 3, NULL);
	for (i = 0; i < 300; i++)
		count[balance_roundrobin(p, 3)]++;
	for (i = 0; i < 3; i++)
		assert_in_range(count[i], 90, 110);
}

/* Weights 1, 2, 3 get 1/6, 2/6 and 3/6 of 600 connections. */
static void
test_roundrobin_honours_weights(void **state)
{
	static const int	 weights[] = { 1, 2, 3 };
	struct balance_peer	 p[3];
	int			 count[3] = { 0, 0, 0 }, i;

	make_peers(p, 3, weights);
	for (i = 0; i < 600; i++)
		count[balance_roundrobin(p, 3)]++;
	assert_in_range(count[0], 90, 110);
	assert_in_range(count[1], 180, 220);
	assert_in_range(count[2], 270, 330);
}

/* Unusable peers get nothing; none usable gives -1. */
static void
test_roundrobin_skips_unusable_peers(void **state)
{
	struct balance_peer	 p[3];
	int			 i, c;

	make_peers(p, 3, NULL);
	p[1].usable = 0;
	for (i = 0; i < 20; i++) {
		c = balance_roundrobin(p, 3);
		assert_true(c == 0 || c == 2);
	}
	p[0].usable = p[2].usable = 0;
	assert_int_equal(balance_roundrobin(p, 3), -1);
}

/* The peer with the fewest active connections for its weight wins. */
static void
test_leastconn_prefers_fewest_per_weight(void **state)
{
	static const int	 weights[] = { 1, 4, 1 };
	struct balance_peer	 p[3];

	make_peers(p, 3, NULL);
	p[0].active = 5;
	p[1].active = 0;
	p[2].active = 3;
	assert_int_equal(balance_leastconn(p, 3), 1);
	p[1].active = 4;
	assert_int_equal(balance_leastconn(p, 3), 2);

	/* 3 on weight 4 beats 1 on weight 1. */
	make_peers(p, 3, weights);
	p[0].active = 1;
	p[1].active = 3;
	p[2].active = 1;
	assert_int_equal(balance_leastconn(p, 3), 1);
	p[1].usable = 0;
	assert_true(balance_leastconn(p, 3) != 1);
}

/* Ties share round robin: idle peers are used in turn, not the first. */
static void
test_leastconn_ties_go_round_robin(void **state)
{
	struct balance_peer	 p[3];
	int			 count[3] = { 0, 0, 0 }, i;

	make_peers(p, 3, NULL);
	for (i = 0; i < 30; i++)
		count[balance_leastconn(p, 3)]++;
	for (i = 0; i < 3; i++)
		assert_int_equal(count[i], 10);
	p[0].usable = p[1].usable = p[2].usable = 0;
	assert_int_equal(balance_leastconn(p, 3), -1);
}

/* first: the first usable peer in order, every time. */
static void
test_first_takes_the_first_usable(void **state)
{
	struct balance_peer	 p[4];

	make_peers(p, 4, NULL);
	assert_int_equal(balance_first(p, 4), 0);
	assert_int_equal(balance_first(p, 4), 0);
	p[0].usable = 0;
	p[1].usable = 0;
	assert_int_equal(balance_first(p, 4), 2);
	p[2].usable = p[3].usable = 0;
	assert_int_equal(balance_first(p, 4), -1);
}

/* The key is the address alone: not the port; v4-mapped is IPv4. */
static void
test_client_key_is_the_address(void **state)
{
	struct sockaddr_in	 a, b;
	struct sockaddr_in6	 m, six;
	struct sockaddr		 un;
	uint64_t		 ka, kb, km, k6;

	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons(1000);
	inet_pton(AF_INET, "192.0.2.7", &a.sin_addr);
	b = a;
	b.sin_port = htons(2000);
	memset(&m, 0, sizeof m);
	m.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:192.0.2.7", &m.sin6_addr);
	six = m;
	inet_pton(AF_INET6, "2001:db8::7", &six.sin6_addr);
	assert_int_equal(balance_client_key((struct sockaddr *)&a, sizeof a,
	    &ka), 0);
	assert_int_equal(balance_client_key((struct sockaddr *)&b, sizeof b,
	    &kb), 0);
	assert_int_equal(balance_client_key((struct sockaddr *)&m, sizeof m,
	    &km), 0);
	assert_int_equal(balance_client_key((struct sockaddr *)&six,
	    sizeof six, &k6), 0);
	assert_true(ka == kb);
	assert_true(ka == km);
	assert_true(ka != k6);
	memset(&un, 0, sizeof un);
	un.sa_family = AF_UNIX;
	assert_int_equal(balance_client_key(&un, sizeof un, &ka), -1);
}

/*
 * Removing one of 10 backends moves only the clients it had (about 1/10,
 * at most 1.25/10 of 10,000); a backend that is down does the same.
 */
static void
test_source_removing_a_backend_moves_few_clients(void **state)
{
	struct balance_peer	 p[MAXPEERS], q[MAXPEERS];
	int			*before, *after;
	size_t			 n, i, k;

	before = calloc(NKEYS, sizeof *before);
	after = calloc(NKEYS, sizeof *after);
	assert_non_null(before);
	assert_non_null(after);
	make_peers(p, 10, NULL);
	source_choices(p, 10, before);
	for (k = 0; k < 10; k += 3) {
		/* Removed from the list. */
		for (i = 0, n = 0; i < 10; i++) {
			if (i != k)
				q[n++] = p[i];
		}
		source_choices(q, 9, after);
		for (i = 0; i < NKEYS; i++) {
			if (before[i] != (int)k)
				assert_int_equal(after[i], before[i] -
				    (before[i] > (int)k));
		}
		/* So the clients that moved are those it had. */
		assert_in_range(count_on(before, (int)k), NKEYS * 75 / 1000,
		    NKEYS * 125 / 1000);

		/* Down: its clients go elsewhere, nobody else moves. */
		p[k].usable = 0;
		source_choices(p, 10, after);
		p[k].usable = 1;
		for (i = 0; i < NKEYS; i++) {
			if (before[i] != (int)k)
				assert_int_equal(after[i], before[i]);
			else
				assert_int_not_equal(after[i], (int)k);
		}
	}
	free(before);
	free(after);
}

/* Adding an 11th backend moves only the clients it takes (about 1/11). */
static void
test_source_adding_a_backend_moves_few_clients(void **state)
{
	struct balance_peer	 p[MAXPEERS];
	int			*before, *after;
	size_t			 i, n;

	before = calloc(NKEYS, sizeof *before);
	after = calloc(NKEYS, sizeof *after);
	assert_non_null(before);
	assert_non_null(after);
	make_peers(p, 11, NULL);
	source_choices(p, 10, before);
	source_choices(p, 11, after);
	n = 0;
	for (i = 0; i < NKEYS; i++) {
		if (after[i] != before[i]) {
			assert_int_equal(after[i], 10);
			n++;
		}
	}
	assert_true(n <= NKEYS * 125 / 1000);
	assert_true(n >= NKEYS * 60 / 1000);
	free(before);
	free(after);
}

/* Equal weights share clients evenly; weights 1, 2, 3 in proportion. */
static void
test_source_spreads_by_weight(void **state)
{
	static const int	 weights[] = { 1, 2, 3 };
	struct balance_peer	 p[3];
	int			*c, count[3] = { 0, 0, 0 };
	size_t			 i;

	c = calloc(NKEYS, sizeof *c);
	assert_non_null(c);
	make_peers(p, 3, NULL);
	source_choices(p, 3, c);
	for (i = 0; i < NKEYS; i++)
		count[c[i]]++;
	for (i = 0; i < 3; i++)
		assert_in_range(count[i], NKEYS / 3 * 9 / 10,
		    NKEYS / 3 * 11 / 10);

	make_peers(p, 3, weights);
	source_choices(p, 3, c);
	memset(count, 0, sizeof count);
	for (i = 0; i < NKEYS; i++)
		count[c[i]]++;
	for (i = 0; i < 3; i++)
		assert_in_range(count[i], NKEYS * weights[i] / 6 * 9 / 10,
		    NKEYS * weights[i] / 6 * 11 / 10);
	free(c);
}

/* A weighted peer that goes down moves only its own clients too. */
static void
test_source_weighted_down_moves_only_its_clients(void **state)
{
	static const int	 weights[] = { 1, 2, 3, 1, 5 };
	struct balance_peer	 p[5];
	int			*before, *after;
	size_t			 i;

	before = calloc(NKEYS, sizeof *before);
	after = calloc(NKEYS, sizeof *after);
	assert_non_null(before);
	assert_non_null(after);
	make_peers(p, 5, weights);
	source_choices(p, 5, before);
	p[2].usable = 0;
	source_choices(p, 5, after);
	for (i = 0; i < NKEYS; i++) {
		if (before[i] != 2)
			assert_int_equal(after[i], before[i]);
	}
	free(before);
	free(after);
}

/* Print the choices for NKEYS clients over 10 backends, one a line. */
static void
print_choices(void)
{
	struct balance_peer	 p[10];
	unsigned int		 i;

	make_peers(p, 10, NULL);
	for (i = 0; i < NKEYS; i++)
		printf("%d\n", balance_source(p, 10, client_key(i)));
	p[3].weight = 7;
	for (i = 0; i < NKEYS; i++)
		printf("%d\n", balance_source(p, 10, client_key(i)));
}

/*
 * Another process (this program run again, with other addresses for
 * everything) makes exactly the same choices: no per-process seed.
 */
static void
test_source_is_the_same_in_another_process(void **state)
{
	struct balance_peer	 p[10];
	FILE			*f;
	pid_t			 pid;
	char			 line[32];
	int			 fds[2], status, choice;
	unsigned int		 n = 0;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execl("/proc/self/exe", "test_balance", "--print-choices",
		    (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	assert_non_null(f);
	make_peers(p, 10, NULL);
	while (fgets(line, sizeof line, f) != NULL) {
		if (n == NKEYS)
			p[3].weight = 7;
		choice = atoi(line);
		assert_int_equal(choice, balance_source(p, 10,
		    client_key(n % NKEYS)));
		n++;
	}
	fclose(f);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(n, 2 * NKEYS);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundrobin_is_smooth),
		cmocka_unit_test(test_roundrobin_spreads_300_evenly),
		cmocka_unit_test(test_roundrobin_honours_weights),
		cmocka_unit_test(test_roundrobin_skips_unusable_peers),
		cmocka_unit_test(test_leastconn_prefers_fewest_per_weight),
		cmocka_unit_test(test_leastconn_ties_go_round_robin),
		cmocka_unit_test(test_first_takes_the_first_usable),
		cmocka_unit_test(test_client_key_is_the_address),
		cmocka_unit_test(
		    test_source_removing_a_backend_moves_few_clients),
		cmocka_unit_test(
		    test_source_adding_a_backend_moves_few_clients),
		cmocka_unit_test(test_source_spreads_by_weight),
		cmocka_unit_test(
		    test_source_weighted_down_moves_only_its_clients),
		cmocka_unit_test(test_source_is_the_same_in_another_process)
	};

	if (argc == 2 && strcmp(argv[1], "--print-choices") == 0) {
		print_choices();
		return (0);
	}
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
