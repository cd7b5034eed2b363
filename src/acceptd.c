/*
 * acceptd: command line, configuration check and dump, then the daemon.
 */
#include <sys/types.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptd.h"

#define ACCEPTD_CONF	SYSCONFDIR "/acceptd.conf"

static const struct option acceptd_longopts[] = {
	{ "config",	required_argument,	NULL, 'c' },
	{ "test",	no_argument,		NULL, 't' },
	{ "dump",	no_argument,		NULL, 'T' },
	{ "log-level",	required_argument,	NULL, 'l' },
	{ "help",	no_argument,		NULL, 'h' },
	{ "version",	no_argument,		NULL, 'V' },
	{ NULL,		0,			NULL, 0 }
};

static const char *acceptd_levels[] = {
	"error", "warning", "notice", "info", "debug"
};

static void	 acceptd_usage(FILE *);
static int	 acceptd_parse_level(const char *, enum log_level *);
static struct config *acceptd_load(const char *);

/* Print the usage message. */
static void
acceptd_usage(FILE *f)
{
	fprintf(f,
	    "usage: acceptd [-c FILE] [-t] [-T] [-l LEVEL] [-h] [-V]\n"
	    "  -c, --config=FILE    configuration file (default: %s)\n"
	    "  -t, --test           check the configuration and exit\n"
	    "  -T, --dump           check, then print the effective "
	    "configuration and exit\n"
	    "  -l, --log-level=L    override log_level (error, warning, "
	    "notice, info, debug)\n"
	    "  -V, --version        print the version and exit\n"
	    "  -h, --help           print this help and exit\n",
	    ACCEPTD_CONF);
}

/* Turn a level name into a level. */
static int
acceptd_parse_level(const char *s, enum log_level *level)
{
	size_t	 i;

	for (i = 0; i < nitems(acceptd_levels); i++) {
		if (strcmp(s, acceptd_levels[i]) == 0) {
			*level = (enum log_level)i;
			return (0);
		}
	}
	return (-1);
}

/*
 * Validate the file in a child first (libconfig 1.5 may exit() on some
 * inputs), then load it here. Prints every error and returns NULL.
 */
static struct config *
acceptd_load(const char *path)
{
	struct causes	 causes = { NULL, 0 };
	struct config	*conf;

	if (config_check_in_child(path, &causes) != 0) {
		causes_print(&causes, stderr);
		causes_free(&causes);
		return (NULL);
	}
	if ((conf = config_load(path, &causes)) == NULL)
		causes_print(&causes, stderr);
	causes_free(&causes);
	return (conf);
}

int
main(int argc, char **argv)
{
	const char	*path = ACCEPTD_CONF;
	struct config	*conf;
	enum log_level	 level = LOG_LEVEL_INFO;
	int		 ch, test = 0, dump = 0, level_set = 0, status;

	while ((ch = getopt_long(argc, argv, "c:tTl:hV", acceptd_longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'T':
			dump = 1;
			break;
		case 'l':
			if (acceptd_parse_level(optarg, &level) != 0) {
				fprintf(stderr, "acceptd: invalid log level "
				    "'%s': expected error, warning, notice, "
				    "info or debug\n", optarg);
				acceptd_usage(stderr);
				return (2);
			}
			level_set = 1;
			break;
		case 'h':
			acceptd_usage(stdout);
			return (0);
		case 'V':
			printf("acceptd %s\n", PACKAGE_VERSION);
			return (0);
		default:
			acceptd_usage(stderr);
			return (2);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "acceptd: unexpected argument '%s'\n",
		    argv[optind]);
		acceptd_usage(stderr);
		return (2);
	}

	log_init(level, "acceptd");
	if ((conf = acceptd_load(path)) == NULL)
		return (1);
	if (dump) {
		config_dump(conf, stdout);
		config_unref(conf);
		return (fflush(stdout) == 0 ? 0 : 1);
	}
	if (test) {
		printf("configuration OK\n");
		config_unref(conf);
		return (0);
	}

	log_setlevel(level_set ? level : conf->log_level);
	status = daemon_run(conf, level_set);
	config_unref(conf);
	log_stop_writer();
	return (status);
}
