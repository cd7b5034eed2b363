/*
 * Unit tests for log.c: where lines go. Under the journal ($JOURNAL_STREAM
 * naming standard error), connection lines become structured entries for
 * the sink, with the writer thread or without it, and fall back to a
 * prefixed line when the journal refuses them; other lines, and every line
 * when standard error is not the journal, are written to standard error.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <pthread.h>
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

#define SINK_MAX_ENTRIES	256
#define SINK_MAX_FIELDS		32

/* What the sink received. */
struct sink_entry {
	char		*fields[SINK_MAX_FIELDS];
	size_t		 n;
	pthread_t	 thread;
};

static struct sink_entry sink_entries[SINK_MAX_ENTRIES];
static size_t		 sink_n;
static int		 sink_result;	/* what the sink returns */

static int	 sink_record(const char *const *, size_t);
static void	 sink_reset(void);
static int	 stderr_to_file(int, int);
static void	 stderr_restore(int);
static char	*file_text(FILE *);
static int	 has_field(const struct sink_entry *, const char *);
static void	 conn_line(int);

/* The sink: keep a copy of every entry. */
static int
sink_record(const char *const *fields, size_t n)
{
	struct sink_entry	*e;
	size_t			 i;

	if (sink_n == SINK_MAX_ENTRIES || n > SINK_MAX_FIELDS)
		return (-1);
	e = &sink_entries[sink_n++];
	for (i = 0; i < n; i++)
		e->fields[i] = strdup(fields[i]);
	e->n = n;
	e->thread = pthread_self();
	return (sink_result);
}

/* Forget every entry. */
static void
sink_reset(void)
{
	size_t	 i, j;

	for (i = 0; i < sink_n; i++) {
		for (j = 0; j < sink_entries[i].n; j++)
			free(sink_entries[i].fields[j]);
	}
	sink_n = 0;
	sink_result = 0;
}

/*
 * Point standard error at a file and (re)initialise logging, telling it
 * that standard error is the journal or not; returns the saved stderr.
 */
static int
stderr_to_file(int fd, int journal)
{
	struct stat	 st;
	char		 env[64];
	int		 saved;

	assert_int_not_equal((saved = dup(STDERR_FILENO)), -1);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(env, sizeof env, "%llu:%llu",
	    (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	if (journal)
		setenv("JOURNAL_STREAM", env, 1);
	else
		setenv("JOURNAL_STREAM", "1:1", 1);
	log_init(LOG_LEVEL_INFO, "acceptd");
	return (saved);
}

/* Put standard error back. */
static void
stderr_restore(int saved)
{
	dup2(saved, STDERR_FILENO);
	close(saved);
	unsetenv("JOURNAL_STREAM");
	log_set_journal_sink(NULL);
	log_init(LOG_LEVEL_INFO, "acceptd");
}

/* Everything written to a file so far. */
static char *
file_text(FILE *f)
{
	char	*buf;
	long	 len;

	fflush(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	rewind(f);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	return (buf);
}

/* Does the entry have exactly this field? */
static int
has_field(const struct sink_entry *e, const char *field)
{
	size_t	 i;

	for (i = 0; i < e->n; i++) {
		if (strcmp(e->fields[i], field) == 0)
			return (1);
	}
	return (0);
}

/* Log connection line number i, with its fields, as session.c does. */
static void
conn_line(int i)
{
	char		 line[128], f_l[64], f_e[64];
	const char	*fields[2];

	snprintf(line, sizeof line, "conn listener=web client=127.0.0.1:%d "
	    "end=client_fin", 1000 + i);
	snprintf(f_l, sizeof f_l, "ACCEPTD_LISTENER=web");
	snprintf(f_e, sizeof f_e, "ACCEPTD_CLIENT=127.0.0.1:%d", 1000 + i);
	fields[0] = f_l;
	fields[1] = f_e;
	log_conn(line, fields, nitems(fields));
}

/* Under the journal a connection line is one structured entry. */
static void
test_journal_conn_line_is_a_structured_entry(void **state)
{
	FILE	*f = tmpfile();
	char	*out;
	int	 saved;

	assert_non_null(f);
	sink_reset();
	saved = stderr_to_file(fileno(f), 1);
	log_set_journal_sink(sink_record);
	assert_true(log_journal());
	conn_line(7);
	out = file_text(f);
	stderr_restore(saved);

	assert_int_equal(sink_n, 1);
	assert_string_equal(sink_entries[0].fields[0],
	    "MESSAGE=conn listener=web client=127.0.0.1:1007 end=client_fin");
	assert_int_equal(sink_entries[0].n, 5);
	assert_true(has_field(&sink_entries[0], "PRIORITY=6"));
	assert_true(has_field(&sink_entries[0], "SYSLOG_IDENTIFIER=acceptd"));
	assert_true(has_field(&sink_entries[0], "ACCEPTD_LISTENER=web"));
	assert_true(has_field(&sink_entries[0],
	    "ACCEPTD_CLIENT=127.0.0.1:1007"));
	assert_string_equal(out, "");	/* nothing on stderr */
	free(out);
	sink_reset();
	fclose(f);
}

/*
 * With the writer thread, entries reach the sink on that thread, in
 * order, and all of them once the writer stops.
 */
static void
test_journal_entries_go_through_the_writer_thread(void **state)
{
	FILE	*f = tmpfile();
	char	*out, want[128];
	size_t	 i;
	int	 saved;

	assert_non_null(f);
	sink_reset();
	saved = stderr_to_file(fileno(f), 1);
	log_set_journal_sink(sink_record);
	log_start_writer();
	for (i = 0; i < 100; i++)
		conn_line((int)i);
	log_stop_writer();
	out = file_text(f);
	stderr_restore(saved);

	assert_int_equal(sink_n, 100);
	for (i = 0; i < sink_n; i++) {
		snprintf(want, sizeof want, "MESSAGE=conn listener=web "
		    "client=127.0.0.1:%zu end=client_fin", 1000 + i);
		assert_string_equal(sink_entries[i].fields[0], want);
		assert_false(pthread_equal(sink_entries[i].thread,
		    pthread_self()));
	}
	assert_string_equal(out, "");
	free(out);
	sink_reset();
	fclose(f);
}

/* When the journal refuses an entry, its line goes to stderr instead. */
static void
test_journal_refusal_falls_back_to_stderr(void **state)
{
	FILE	*f = tmpfile();
	char	*out;
	int	 saved;

	assert_non_null(f);
	sink_reset();
	sink_result = -1;
	saved = stderr_to_file(fileno(f), 1);
	log_set_journal_sink(sink_record);
	conn_line(1);
	out = file_text(f);
	stderr_restore(saved);

	assert_int_equal(sink_n, 1);
	assert_string_equal(out,
	    "<6>conn listener=web client=127.0.0.1:1001 end=client_fin\n");
	free(out);
	sink_reset();
	fclose(f);
}

/* Other messages under the journal: prefixed lines on stderr. */
static void
test_journal_other_lines_stay_on_stderr(void **state)
{
	FILE	*f = tmpfile();
	char	*out;
	int	 saved;

	assert_non_null(f);
	sink_reset();
	saved = stderr_to_file(fileno(f), 1);
	log_set_journal_sink(sink_record);
	log_notice("reloaded: %d listeners", 2);
	log_warnx("a warning");
	out = file_text(f);
	stderr_restore(saved);

	assert_int_equal(sink_n, 0);
	assert_string_equal(out, "<5>reloaded: 2 listeners\n<4>a warning\n");
	free(out);
	fclose(f);
}

/* Standard error is not the journal: the sink is never used. */
static void
test_not_journal_conn_lines_are_plain(void **state)
{
	FILE	*f = tmpfile();
	char	*out;
	int	 saved;

	assert_non_null(f);
	sink_reset();
	saved = stderr_to_file(fileno(f), 0);
	log_set_journal_sink(sink_record);
	assert_false(log_journal());
	conn_line(2);
	out = file_text(f);
	stderr_restore(saved);

	assert_int_equal(sink_n, 0);
	assert_non_null(strstr(out, " acceptd: info: conn listener=web "
	    "client=127.0.0.1:1002 end=client_fin\n"));
	assert_int_not_equal(out[0], '<');
	free(out);
	fclose(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_journal_conn_line_is_a_structured_entry),
		cmocka_unit_test(
		    test_journal_entries_go_through_the_writer_thread),
		cmocka_unit_test(test_journal_refusal_falls_back_to_stderr),
		cmocka_unit_test(test_journal_other_lines_stay_on_stderr),
		cmocka_unit_test(test_not_journal_conn_lines_are_plain)
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
