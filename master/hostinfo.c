/*
 * omctl hosts show: one inventory host with the facts its last "facts" job
 * gathered, as a TABLE of (field, value) rows.  The inventory fields come
 * first, facts_at last among them; every row after it is one top-level fact
 * (its value as compact JSON), in key order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "master_int.h"

/* A cell holds at most OM_MAX_TEXT bytes; longer fact values are cut, marked. */
#define CELL_MAX (OM_MAX_TEXT - 8)

struct rows {
	char **cells;
	uint32_t n, cap;
	int err;
};

/* Appends one (field, value) row, both copied; value may be NULL. */
static void
row(struct rows *t, const char *field, const char *value)
{
	const char *v[2] = {field, value};
	int k;

	for (k = 0; k < 2 && t->err == 0; k++) {
		if (t->n == t->cap) {
			uint32_t cap = t->cap ? t->cap * 2 : 32;
			char **c;
			if (cap > OM_MAX_TABLE_CELLS ||
			    (c = om_realloc(t->cells, cap * sizeof(*c))) == NULL) {
				t->err = OM_ENOMEM;
				return;
			}
			t->cells = c;
			t->cap = cap;
		}
		t->cells[t->n] = v[k] ? om_strdup(v[k]) : NULL;
		if (v[k] != NULL && t->cells[t->n] == NULL)
			t->err = OM_ENOMEM;
		t->n++;
	}
}

/* One row with value s cut to at most CELL_MAX bytes on a UTF-8 boundary, then "...". */
static void
row_cut(struct rows *t, const char *field, const char *s)
{
	size_t len = strlen(s);
	char *c;

	if (len <= CELL_MAX) {
		row(t, field, s);
		return;
	}
	if ((c = om_malloc(CELL_MAX + 4)) == NULL) {
		t->err = OM_ENOMEM;
		return;
	}
	len = CELL_MAX;
	while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
		len--;
	memcpy(c, s, len);
	memcpy(c + len, "...", 4);
	row(t, field, c);
	om_free(c);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One row per top-level key of the facts object, keys sorted. */
static void
fact_rows(struct rows *t, const char *facts)
{
	json_t *o = json_loads(facts, 0, NULL);
	const char **keys = NULL, *key;
	json_t *val;
	size_t n = 0, i;

	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return;
	}
	if ((keys = om_calloc(json_object_size(o) + 1, sizeof(*keys))) == NULL) {
		t->err = OM_ENOMEM;
		json_decref(o);
		return;
	}
	json_object_foreach(o, key, val) keys[n++] = key;
	qsort(keys, n, sizeof(*keys), cmp_str);
	/* Rows stay within one reply's worth of items. */
	for (i = 0; i < n && i < OM_MAX_ITEMS && t->err == 0; i++) {
		char *s = json_dumps(json_object_get(o, keys[i]), JSON_COMPACT | JSON_ENCODE_ANY);
		if (s == NULL) {
			t->err = OM_ENOMEM;
			break;
		}
		/* a key longer than a name cannot be a field either */
		row_cut(t, strlen(keys[i]) > OM_MAX_NAME ? "-" : keys[i], s);
		free(s);
	}
	om_free(keys);
	json_decref(o);
}

void
master_op_host_show(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	static char *cols[] = {"FIELD", "VALUE"};
	struct om_msg rep = {.type = OM_MSG_TABLE};
	const char *name = r->msg.u.by_name.name;
	struct rows t = {0};
	struct om_host h;
	char *facts = NULL, buf[1024];
	int64_t facts_at = 0;
	uint32_t i;
	size_t len;
	int rv;

	rv = om_store_host_get(m->store, name, &h, &facts, &facts_at);
	/* A host outside the caller's scope does not exist for it. */
	if (rv == OM_ENOTFOUND || (rv == 0 && !auth_host_visible(p, &h))) {
		reply_error(r, OM_ENOTFOUND, "no host '%s'", name);
		goto out;
	}
	if (rv != 0) {
		om_err("cannot read host '%s': %s", name, om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "master database unavailable, retry later");
		goto out;
	}
	row(&t, "name", h.name);
	row(&t, "address", h.addr);
	snprintf(buf, sizeof(buf), "%u", h.port ? h.port : 22u);
	row(&t, "port", buf);
	row(&t, "user", h.user);
	row(&t, "idc", h.idc);
	buf[0] = '\0';
	for (i = 0, len = 0; i < h.ngroups && len < sizeof(buf) - 1; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "," : "",
		                        h.groups[i]);
	row(&t, "groups", h.ngroups ? buf : NULL);
	if (facts_at > 0) {
		time_t s = (time_t)(facts_at / 1000);
		struct tm tm;
		gmtime_r(&s, &tm);
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
		row(&t, "facts_at", buf);
	} else {
		row(&t, "facts_at", NULL);
	}
	if (facts != NULL)
		fact_rows(&t, facts);
	if (t.err != 0) {
		reply_error(r, OM_ENOMEM, "master out of memory");
	} else {
		rep.u.table.columns = cols;
		rep.u.table.ncolumns = 2;
		rep.u.table.cells = t.cells;
		rep.u.table.ncells = t.n;
		om_rpc_reply(r, &rep);
	}
out:
	for (i = 0; i < t.n; i++)
		om_free(t.cells[i]);
	om_free(t.cells);
	om_free(facts);
	om_host_release(&h);
}
