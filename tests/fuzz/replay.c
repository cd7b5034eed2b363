/*
 * replay.c: run a fuzz target over its seed corpus and its regressions,
 * one cmocka test per file, in every build (no libFuzzer needed).
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acceptd.h"

/* FUZZ_DIR (tests/fuzz in the source tree) and FUZZ_TARGET come from make. */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int	LLVMFuzzerInitialize(int *, char ***) __attribute__((weak));

static void	replay_one(void **);
static void	replay_add(const char *, struct CMUnitTest **, size_t *);
static int	replay_compare(const void *, const void *);

/* Feed one file to the target. */
static void
replay_one(void **state)
{
	const char	*path = *state;
	FILE		*f;
	uint8_t		*buf;
	long		 len;

	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	buf = malloc(len == 0 ? 1 : (size_t)len);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	free(buf);
}

/* Order tests by file name. */
static int
replay_compare(const void *a, const void *b)
{
	const struct CMUnitTest	*x = a, *y = b;

	return (strcmp(x->name, y->name));
}

/* One test for each regular file of a directory (missing: none). */
static void
replay_add(const char *dir, struct CMUnitTest **tests, size_t *n)
{
	struct CMUnitTest	*t;
	struct dirent		*de;
	struct stat		 sb;
	DIR			*d;
	char			*path;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		xasprintf(&path, "%s/%s", dir, de->d_name);
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			free(path);
			continue;
		}
		*tests = xreallocarray(*tests, *n + 1, sizeof **tests);
		t = &(*tests)[(*n)++];
		memset(t, 0, sizeof *t);
		t->name = path + strlen(FUZZ_DIR) + 1;
		t->test_func = replay_one;
		t->initial_state = path;
	}
	closedir(d);
}

/* Replay corpus/TARGET/ and regressions/TARGET/. */
int
main(int argc, char **argv)
{
	struct CMUnitTest	*tests = NULL;
	size_t			 n = 0, i;
	int			 rv;

	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	replay_add(FUZZ_DIR "/corpus/" FUZZ_TARGET, &tests, &n);
	replay_add(FUZZ_DIR "/regressions/" FUZZ_TARGET, &tests, &n);
	if (n == 0) {
		fprintf(stderr, "no corpus in %s\n", FUZZ_DIR);
		return (1);
	}
	qsort(tests, n, sizeof *tests, replay_compare);
	rv = _cmocka_run_group_tests(FUZZ_TARGET, tests, n, NULL, NULL);
	for (i = 0; i < n; i++)
		free((char *)tests[i].initial_state);
	free(tests);
	return (rv);
}
