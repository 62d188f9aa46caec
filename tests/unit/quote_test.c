/*
 * Property test for om_shell_quote, the one audited quoting function every
 * module's shell text goes through: for random byte strings, what a real
 * /bin/sh makes of the quoted word must be the original bytes, exactly.
 * OM_QUOTE_SEED=N repeats a run (the seed is printed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "om/base.h"

#define ROUNDS  2000
#define MAX_LEN 200

/* What `sh -c script` writes to stdout; caller frees *out (malloc). */
static int
sh_output(const char *script, uint8_t **out, size_t *len)
{
	size_t cap = 256, n = 0;
	uint8_t *buf = malloc(cap);
	int fds[2], status;
	ssize_t got;
	pid_t pid;

	if (buf == NULL || pipe(fds) != 0)
		return -1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		if (n == cap && (buf = realloc(buf, cap *= 2)) == NULL)
			return -1;
		if ((got = read(fds[0], buf + n, cap - n)) <= 0)
			break;
		n += (size_t)got;
	}
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	*len = n;
	return 0;
}

static void
roundtrip(const char *s, size_t n)
{
	struct om_buf b;
	uint8_t *out = NULL;
	size_t len = 0;

	om_buf_init(&b, 16 * MAX_LEN);
	om_buf_printf(&b, "printf %%s ");
	assert_int_equal(om_shell_quote(&b, s, n), 0);
	om_buf_putc(&b, '\0');
	assert_int_equal(b.err, 0);
	if (sh_output((const char *)b.data, &out, &len) != 0)
		fail_msg("sh failed on: %s", (const char *)b.data);
	if (len != n || memcmp(out, s, n) != 0)
		fail_msg("round trip changed the bytes (%zu in, %zu out): %s", n, len,
		         (const char *)b.data);
	free(out);
	om_buf_release(&b);
}

static void
test_random_roundtrip(void **state)
{
	const char *env = getenv("OM_QUOTE_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
	char s[MAX_LEN + 1];

	(void)state;
	printf("# OM_QUOTE_SEED=%u\n", seed);
	srand(seed);
	for (int i = 0; i < ROUNDS; i++) {
		size_t n = (size_t)rand() % (MAX_LEN + 1);

		for (size_t k = 0; k < n; k++)
			s[k] = (char)(1 + rand() % 255);
		s[n] = '\0';
		roundtrip(s, n);
	}
}

/* The strings that broke quoting functions elsewhere. */
static void
test_known_hard(void **state)
{
	static const char *const cases[] = {
	        "",   "'",      "''",           "\\'",       "'\\''", "$(id)", "`id`", "${HOME}",
	        "\n", "a\nb",   "-n",           "--",        "*",     "~",     "!",    "%s%n",
	        "\"", "\\\\\"", "\x7f\xff\x01", "a'b'c'd'e", " lead", "trail "};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		roundtrip(cases[i], strlen(cases[i]));
}

static void
test_nul_refused(void **state)
{
	struct om_buf b;

	(void)state;
	om_buf_init(&b, 64);
	assert_int_equal(om_shell_quote(&b, "a\0b", 3), OM_EINVAL);
	om_buf_release(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_known_hard),
	        cmocka_unit_test(test_random_roundtrip),
	        cmocka_unit_test(test_nul_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
