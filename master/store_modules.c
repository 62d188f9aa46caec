/*
 * The store's module catalog (contract in store.h): what the workers
 * announce in MODULES, one row per module name in `modules` and who offers
 * it in `module_workers` (migration 3), and whether it promises to be
 * idempotent (migration 6).  The schemas arrive validated and
 * re-serialised by master/modules.c; this file only keeps them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "om/base.h"
#include "om/msg.h"
#include "store.h"
#include "store_int.h"

#define SHORT_MAX 64 /* version and kind, as the decoder bounds them */

/* One parameterized query, text results; NULL (error recorded) on failure. */
static PGresult *
query(struct om_store *st, const char *what, const char *sql, int n, const char *const *vals)
{
	PGresult *r = om__store_exec(st, sql, n, vals, NULL, NULL, 0);

	if (!om__store_res_ok(r)) {
		om__store_set_err_res(st, what, r);
		PQclear(r);
		return NULL;
	}
	return r;
}

static int
by_name(const void *a, const void *b)
{
	const struct om_module_info *x = *(const struct om_module_info *const *)a;
	const struct om_module_info *y = *(const struct om_module_info *const *)b;

	return strcmp(x->name, y->name);
}

int
om_store_modules_put(struct om_store *st, const char *worker, const char *idc,
                     const struct om_module_info *mods, size_t n)
{
	const struct om_module_info **sorted = NULL;
	char version[SHORT_MAX + 1], kind[SHORT_MAX + 1], *desc = NULL;
	struct om_buf names;
	size_t i;
	int rv;

	if (worker == NULL || idc == NULL || n > OM_MAX_MODULES || (n > 0 && mods == NULL))
		return OM_EINVAL;
	for (i = 0; i < n; i++)
		if (!om_name_valid(mods[i].name) || mods[i].schema == NULL ||
		    mods[i].version == NULL || mods[i].kind == NULL)
			return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	om_buf_init(&names, (size_t)OM_MAX_MODULES * (OM_MAX_NAME * 2 + 4) + 4);
	if ((sorted = om_calloc(n + 1, sizeof(*sorted))) == NULL ||
	    (desc = om_malloc(OM_MAX_TEXT + 1)) == NULL) {
		rv = OM_ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++)
		sorted[i] = &mods[i];
	/* Rows locked in name order: two workers announcing at once cannot deadlock. */
	qsort(sorted, n, sizeof(*sorted), by_name);
	om_buf_putc(&names, '{');
	for (i = 0; i < n; i++)
		om__store_array_put(&names, sorted[i]->name, i == 0);
	if ((rv = om__store_array_end(&names)) != 0)
		goto out;
	if ((rv = om__store_run_cmd(st, "modules put", "BEGIN", 0, NULL)) != 0)
		goto out;
	{
		const char *v[2] = {worker, (const char *)names.data};

		if ((rv = om__store_run_cmd(st, "modules put",
		                            "DELETE FROM module_workers WHERE worker = $1::text"
		                            " AND NOT (module = ANY ($2::text[]))",
		                            2, v)) != 0)
			goto out;
	}
	for (i = 0; i < n; i++) {
		const struct om_module_info *mi = sorted[i];
		const char *idem = mi->idempotent ? "true" : "false";
		const char *v[6] = {mi->name, version, kind, NULL, mi->schema, idem};
		const char *w[4] = {mi->name, worker, idc, version};

		/* the worker's text goes into text columns: valid UTF-8 only */
		om__store_utf8_clean(mi->version, version, SHORT_MAX);
		om__store_utf8_clean(mi->kind, kind, SHORT_MAX);
		if (mi->description != NULL) {
			om__store_utf8_clean(mi->description, desc, OM_MAX_TEXT);
			v[3] = desc;
		}
		/* An unchanged module keeps its row (and updated_at) as it is. */
		if ((rv = om__store_run_cmd(
		             st, "module upsert",
		             "INSERT INTO modules (name, version, kind, description, schema,"
		             " idempotent) VALUES ($1::text, $2::text, $3::text, $4::text,"
		             " $5::jsonb, $6::bool)"
		             " ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version,"
		             " kind = EXCLUDED.kind, description = EXCLUDED.description,"
		             " schema = EXCLUDED.schema, idempotent = EXCLUDED.idempotent,"
		             " updated_at = now()"
		             " WHERE (modules.version, modules.kind, modules.description,"
		             " modules.schema, modules.idempotent) IS DISTINCT FROM"
		             " (EXCLUDED.version, EXCLUDED.kind, EXCLUDED.description,"
		             " EXCLUDED.schema, EXCLUDED.idempotent)",
		             6, v)) != 0)
			goto out;
		if ((rv = om__store_run_cmd(
		             st, "module worker",
		             "INSERT INTO module_workers (module, worker, idc, version)"
		             " VALUES ($1::text, $2::text, $3::text, $4::text)"
		             " ON CONFLICT (module, worker) DO UPDATE SET idc = EXCLUDED.idc,"
		             " version = EXCLUDED.version, seen_at = now()",
		             4, w)) != 0)
			goto out;
	}
	rv = om__store_run_cmd(st, "modules commit", "COMMIT", 0, NULL);
out:
	if (rv != 0)
		om__store_rollback(st);
	om_buf_release(&names);
	om_free(desc);
	om_free(sorted);
	return rv;
}

/* Rows (name, version, kind, description, schema, idempotent) into a new array. */
static int
take_modules(const PGresult *r, struct om_module_info **out, size_t *n)
{
	struct om_module_info *mods;
	int rows = PQntuples(r);

	if (rows == 0)
		return 0;
	if ((mods = om_calloc((size_t)rows, sizeof(*mods))) == NULL)
		return OM_ENOMEM;
	for (int i = 0; i < rows; i++) {
		char **f[5] = {&mods[i].name, &mods[i].version, &mods[i].kind, &mods[i].description,
		               &mods[i].schema};

		for (int c = 0; c < 5; c++) {
			if (PQgetisnull(r, i, c))
				continue;
			if ((*f[c] = om_strdup(PQgetvalue(r, i, c))) == NULL) {
				om_modules_free(mods, (size_t)rows);
				return OM_ENOMEM;
			}
		}
		mods[i].idempotent = strcmp(PQgetvalue(r, i, 5), "t") == 0;
	}
	*out = mods;
	*n = (size_t)rows;
	return 0;
}

int
om_store_modules_list(struct om_store *st, struct om_module_info **out, size_t *n)
{
	PGresult *r;
	int rv;

	*out = NULL;
	*n = 0;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((r = query(st, "modules list",
	               "SELECT name, version, kind, description, schema::text, idempotent"
	               " FROM modules m WHERE EXISTS (SELECT 1 FROM module_workers w"
	               " WHERE w.module = m.name) ORDER BY name",
	               0, NULL)) == NULL)
		return OM_EDB;
	rv = take_modules(r, out, n);
	PQclear(r);
	return rv;
}

int
om_store_module_get(struct om_store *st, const char *name, struct om_module_info **out,
                    char ***idcs, size_t *nidcs)
{
	const char *v[1] = {name};
	char **list = NULL;
	size_t n = 0;
	PGresult *r;
	int rv, rows;

	*out = NULL;
	if (idcs) {
		*idcs = NULL;
		*nidcs = 0;
	}
	if (name == NULL || !om_name_valid(name))
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((r = query(st, "module get",
	               "SELECT name, version, kind, description, schema::text, idempotent"
	               " FROM modules m WHERE name = $1::text AND EXISTS (SELECT 1"
	               " FROM module_workers w WHERE w.module = m.name)",
	               1, v)) == NULL)
		return OM_EDB;
	rv = take_modules(r, out, &n);
	PQclear(r);
	if (rv != 0)
		return rv;
	if (n == 0)
		return OM_ENOTFOUND;
	if (idcs == NULL)
		return 0;
	if ((r = query(st, "module idcs",
	               "SELECT DISTINCT idc FROM module_workers WHERE module = $1::text"
	               " ORDER BY idc",
	               1, v)) == NULL) {
		rv = OM_EDB;
		goto fail;
	}
	rows = PQntuples(r);
	if ((list = om_calloc((size_t)rows + 1, sizeof(*list))) == NULL) {
		PQclear(r);
		rv = OM_ENOMEM;
		goto fail;
	}
	for (int i = 0; i < rows; i++)
		if ((list[i] = om_strdup(PQgetvalue(r, i, 0))) == NULL) {
			for (int j = 0; j < i; j++)
				om_free(list[j]);
			om_free(list);
			PQclear(r);
			rv = OM_ENOMEM;
			goto fail;
		}
	PQclear(r);
	*idcs = list;
	*nidcs = (size_t)rows;
	return 0;
fail:
	om_modules_free(*out, 1);
	*out = NULL;
	return rv;
}
