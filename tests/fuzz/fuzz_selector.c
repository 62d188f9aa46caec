/*
 * Fuzzes the target selector parser and matcher (master/selector.c).
 *
 * Input: the selector, optionally followed by '\n' and a host name that is
 * matched along with the fixed hosts (its IDC and group are the same
 * text), so that globs meet arbitrary names too.
 *
 * Beyond not crashing, an accepted selector must mean what selector.h
 * says: each term is parsed again on its own, and the match of the whole
 * must equal (any positive term, or all if there are none) and no negative
 * term.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "om/msg.h"
#include "selector.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NHOSTS 4

static char *web_groups[] = {"web", "frontend"};

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The expected match of s for every host, term by term; s parsed as a whole. */
static void
oracle(const char *s, const struct om_host *hosts, bool *want)
{
	bool any_pos = false, pos[NHOSTS] = {false}, neg[NHOSTS] = {false};
	const char *p = s;

	for (;;) {
		const char *comma = strchr(p, ',');
		size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		bool is_neg = false;
		struct om_selector *one;
		char *term;

		while (n > 0 && is_space(*p))
			p++, n--;
		if (n > 0 && *p == '!') {
			is_neg = true;
			p++, n--;
			while (n > 0 && is_space(*p))
				p++, n--;
		}
		if ((term = om_strndup(p, n)) == NULL)
			abort();
		/* A term that passed as part of the whole passes alone. */
		if (om_selector_parse(term, &one, NULL, 0) != 0)
			abort();
		for (int i = 0; i < NHOSTS; i++) {
			bool m = om_selector_match(one, &hosts[i]);

			if (is_neg)
				neg[i] |= m;
			else
				pos[i] |= m;
		}
		any_pos |= !is_neg;
		om_selector_free(one);
		om_free(term);
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	for (int i = 0; i < NHOSTS; i++)
		want[i] = (any_pos ? pos[i] : true) && !neg[i];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct om_host hosts[NHOSTS] = {
	        {.name = "web-1", .idc = "bj", .groups = web_groups, .ngroups = 2},
	        {.name = "db-2", .idc = "sh", .groups = NULL, .ngroups = 0},
	        {0}, /* nothing set */
	        {0}, /* from the input */
	};
	const uint8_t *nl = memchr(data, '\n', size);
	size_t slen = nl != NULL ? (size_t)(nl - data) : size;
	struct om_selector *sel = (struct om_selector *)&hosts; /* must be reset */
	char *s, *extra = NULL;
	char err[256];
	int rc;

	/* Twice the limit: long inputs must hit the length check, not go unread. */
	if (size > 2 * OM_MAX_TEXT + 2)
		return 0;
	s = om_strndup((const char *)data, slen);
	if (s == NULL)
		abort();
	if (nl != NULL) {
		extra = om_strndup((const char *)nl + 1, size - slen - 1);
		if (extra == NULL)
			abort();
		hosts[3].name = hosts[3].idc = extra;
		hosts[3].groups = &extra;
		hosts[3].ngroups = 1;
	}

	memset(err, 0x55, sizeof(err));
	rc = om_selector_parse(s, &sel, err, sizeof(err));
	if (rc == 0) {
		bool want[NHOSTS];

		if (sel == NULL)
			abort();
		oracle(s, hosts, want);
		for (int i = 0; i < NHOSTS; i++)
			if (om_selector_match(sel, &hosts[i]) != want[i])
				abort();
		om_selector_free(sel);
	} else {
		/* Failure: no selector, a known code and a terminated message. */
		if (sel != NULL || (rc != OM_EINVAL && rc != OM_ENOMEM))
			abort();
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort();
	}
	om_free(s);
	om_free(extra);
	return 0;
}
