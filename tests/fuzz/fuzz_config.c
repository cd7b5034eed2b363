/*
 * fuzz_config.c: libFuzzer target for the configuration loader, through
 * files in a temporary directory.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acceptd.h"

/*
 * An input is up to FUZZ_CONFIG_FILES files separated by NUL bytes: the
 * main file acceptd.conf, then a.conf, b.conf and c.conf that it may
 * @include. The directory also holds sub/, a directory an @include may
 * name. A configuration that loads is dumped (as -T does), and the dump
 * must load again and dump the same.
 */

#define FUZZ_CONFIG_FILES	4

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int	LLVMFuzzerInitialize(int *, char ***);
const char *__lsan_default_suppressions(void);

static void	fuzz_config_cleanup(void);
static void	fuzz_config_write(const char *, const uint8_t *, size_t);
static char	*fuzz_config_dump(const struct config *, size_t *);
static void	fuzz_config_again(const struct config *);

static const char *fuzz_config_names[FUZZ_CONFIG_FILES] = {
	"acceptd.conf", "a.conf", "b.conf", "c.conf"
};
static char	 fuzz_config_dir[PATH_MAX];
static int	 fuzz_config_ready;

/*
 * libconfig 1.5 itself leaks the value of a token that its grammar rejects
 * (a file holding only "x" loses 64 bytes in strbuf_append; a string cut
 * by the end of an included file loses one allocated in libconfig_yylex).
 * acceptd reads a file in its own process only once a child has found it
 * valid (config_check_in_child), so only that child ever loses them.
 */
const char *
__lsan_default_suppressions(void)
{
	return ("leak:strbuf_append\nleak:libconfig_yylex\n");
}

/* Remove the temporary directory at exit. */
static void
fuzz_config_cleanup(void)
{
	char	 path[PATH_MAX];
	size_t	 i;

	if (!fuzz_config_ready)
		return;
	for (i = 0; i < FUZZ_CONFIG_FILES; i++) {
		snprintf(path, sizeof path, "%s/%s", fuzz_config_dir,
		    fuzz_config_names[i]);
		unlink(path);
	}
	snprintf(path, sizeof path, "%s/dump.conf", fuzz_config_dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/sub", fuzz_config_dir);
	rmdir(path);
	rmdir(fuzz_config_dir);
}

/* Make the temporary directory, once. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char		 path[PATH_MAX];
	const char	*tmp;

	(void)argc;
	(void)argv;
	if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
		tmp = "/tmp";
	snprintf(fuzz_config_dir, sizeof fuzz_config_dir,
	    "%s/acceptd-fuzz.XXXXXX", tmp);
	if (mkdtemp(fuzz_config_dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	fuzz_config_ready = 1;
	atexit(fuzz_config_cleanup);
	snprintf(path, sizeof path, "%s/sub", fuzz_config_dir);
	if (mkdir(path, 0700) != 0) {
		perror("mkdir");
		exit(1);
	}
	log_init(LOG_LEVEL_ERROR, "fuzz_config");
	return (0);
}

/* Write one file of the directory (name relative to it). */
static void
fuzz_config_write(const char *name, const uint8_t *data, size_t len)
{
	char	 path[PATH_MAX];
	FILE	*f;

	snprintf(path, sizeof path, "%s/%s", fuzz_config_dir, name);
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		abort();
	}
	if (len != 0 && fwrite(data, 1, len, f) != len) {
		perror(path);
		abort();
	}
	if (fclose(f) != 0) {
		perror(path);
		abort();
	}
}

/* What -T prints for a configuration. */
static char *
fuzz_config_dump(const struct config *conf, size_t *len)
{
	char	*buf = NULL;
	FILE	*f;

	if ((f = open_memstream(&buf, len)) == NULL)
		abort();
	config_dump(conf, f);
	if (fclose(f) != 0)
		abort();
	return (buf);
}

/* The dump of a loaded configuration loads again to the same dump. */
static void
fuzz_config_again(const struct config *conf)
{
	struct causes	 errs = { NULL, 0 };
	struct config	*back;
	char		 path[PATH_MAX], *one, *two;
	size_t		 len1, len2;

	one = fuzz_config_dump(conf, &len1);
	fuzz_config_write("dump.conf", (const uint8_t *)one, len1);
	snprintf(path, sizeof path, "%s/dump.conf", fuzz_config_dir);
	if ((back = config_load(path, &errs)) == NULL) {
		fprintf(stderr, "the dump does not load:\n%s", one);
		causes_print(&errs, stderr);
		abort();
	}
	two = fuzz_config_dump(back, &len2);
	if (len1 != len2 || memcmp(one, two, len1) != 0) {
		fprintf(stderr, "the dump changed:\n%s---\n%s", one, two);
		abort();
	}
	config_unref(back);
	causes_free(&errs);
	free(one);
	free(two);
}

/* One input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct causes	 errs = { NULL, 0 };
	struct config	*conf;
	const uint8_t	*p = data, *end = data + size, *nul;
	char		 path[PATH_MAX];
	size_t		 i;

	for (i = 0; i < FUZZ_CONFIG_FILES; i++) {
		if (p == NULL) {
			snprintf(path, sizeof path, "%s/%s", fuzz_config_dir,
			    fuzz_config_names[i]);
			if (unlink(path) != 0 && errno != ENOENT)
				abort();
			continue;
		}
		nul = memchr(p, '\0', (size_t)(end - p));
		fuzz_config_write(fuzz_config_names[i], p,
		    (size_t)((nul != NULL ? nul : end) - p));
		p = nul != NULL ? nul + 1 : NULL;
	}

	snprintf(path, sizeof path, "%s/%s", fuzz_config_dir,
	    fuzz_config_names[0]);
	conf = config_load(path, &errs);
	if (conf == NULL && errs.n == 0)
		abort();
	if (conf != NULL) {
		if (errs.n != 0)
			abort();
		fuzz_config_again(conf);
	}
	config_unref(conf);
	causes_free(&errs);
	return (0);
}
