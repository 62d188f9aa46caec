/*
 * The store's reads for job control and host details (contract in store.h):
 * a job's submitter and state (cancel), its unfinished hosts (cancel after a
 * master restart), one inventory host with its facts.  Parameterized like
 * the rest of the store; results in binary format where the column types are
 * fixed, so no text is parsed back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "om/base.h"
#include "om/msg.h"
#include "store.h"
#include "store_int.h"

/* One parameterized query, binary results; NULL (error recorded) on failure. */
static PGresult *
query(struct om_store *st, const char *what, const char *sql, int n, const char *const *vals)
{
	PGresult *r = PQexecParams(st->conn, sql, n, NULL, vals, NULL, NULL, 1);

	if (!om__store_res_ok(r)) {
		om__store_set_err_res(st, what, r);
		PQclear(r);
		return NULL;
	}
	return r;
}

/* Column col of row as an owned string; NULL stays NULL.  false when out of memory. */
static bool
take_str(const PGresult *r, int row, int col, char **out)
{
	*out = NULL;
	if (PQgetisnull(r, row, col))
		return true;
	*out = om_strndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
	return *out != NULL;
}

void
om_job_info_release(struct om_job_info *j)
{
	if (j == NULL)
		return;
	om_free(j->created_by);
	om_free(j->module);
	memset(j, 0, sizeof(*j));
}

int
om_store_job_get(struct om_store *st, uint64_t job_id, struct om_job_info *out)
{
	char jid[24];
	const char *v[1] = {jid};
	PGresult *r;
	int rv;

	if (out == NULL)
		return OM_EINVAL;
	memset(out, 0, sizeof(*out));
	if (job_id == 0 || job_id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	if ((r = query(st, "job get",
	               "SELECT created_by, module, state = 'done', nhosts FROM jobs"
	               " WHERE id = $1::bigint",
	               1, v)) == NULL)
		return OM_EDB;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return OM_ENOTFOUND;
	}
	out->id = job_id;
	out->done = PQgetlength(r, 0, 2) == 1 && PQgetvalue(r, 0, 2)[0] != 0;
	out->nhosts = (uint32_t)om__store_bin_int(r, 0, 3);
	rv = take_str(r, 0, 0, &out->created_by) && take_str(r, 0, 1, &out->module) ? 0 : OM_ENOMEM;
	PQclear(r);
	if (rv != 0)
		om_job_info_release(out);
	return rv;
}

int
om_store_job_open_hosts(struct om_store *st, uint64_t job_id, char ***names, size_t *n)
{
	char jid[24];
	const char *v[1] = {jid};
	PGresult *r;
	char **out;
	int rv = 0, i, rows;

	*names = NULL;
	*n = 0;
	if (job_id == 0 || job_id > INT64_MAX)
		return OM_ENOTFOUND;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	snprintf(jid, sizeof(jid), "%" PRIu64, job_id);
	/* The partial index job_hosts_open covers exactly these rows. */
	if ((r = query(st, "job open hosts",
	               "SELECT host FROM job_hosts WHERE job_id = $1::bigint AND state NOT IN"
	               " ('ok','failed','unreachable','timeout','cancelled','skipped','lost')"
	               " ORDER BY host COLLATE \"C\"",
	               1, v)) == NULL)
		return OM_EDB;
	rows = PQntuples(r);
	if ((out = om_calloc((size_t)rows + 1, sizeof(*out))) == NULL) {
		PQclear(r);
		return OM_ENOMEM;
	}
	for (i = 0; i < rows && rv == 0; i++)
		if (!take_str(r, i, 0, &out[i]) || out[i] == NULL)
			rv = OM_ENOMEM;
	PQclear(r);
	if (rv != 0) {
		for (i = 0; i < rows; i++)
			om_free(out[i]);
		om_free(out);
		return rv;
	}
	*names = out;
	*n = (size_t)rows;
	return 0;
}

int
om_store_host_get(struct om_store *st, const char *name, struct om_host *h, char **facts,
                  int64_t *facts_at_ms)
{
	const char *v[1] = {name};
	PGresult *r;
	int rv;

	if (h == NULL || facts == NULL || facts_at_ms == NULL)
		return OM_EINVAL;
	memset(h, 0, sizeof(*h));
	*facts = NULL;
	*facts_at_ms = 0;
	if (name == NULL)
		return OM_EINVAL;
	if ((rv = om__store_ready(st)) != 0)
		return rv;
	if ((r = query(st, "host get",
	               "SELECT name, addr, port, ssh_user, idc, groups, facts::text,"
	               " (extract(epoch FROM facts_at) * 1000)::bigint FROM hosts"
	               " WHERE name = $1::text",
	               1, v)) == NULL)
		return OM_EDB;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return OM_ENOTFOUND;
	}
	h->port = (uint32_t)om__store_bin_int(r, 0, 2);
	*facts_at_ms = om__store_bin_int(r, 0, 7);
	if (!take_str(r, 0, 0, &h->name) || !take_str(r, 0, 1, &h->addr) ||
	    !take_str(r, 0, 3, &h->user) || !take_str(r, 0, 4, &h->idc) ||
	    !take_str(r, 0, 6, facts)) {
		rv = OM_ENOMEM;
	} else {
		rv = om__store_bin_text_array(PQgetvalue(r, 0, 5), PQgetlength(r, 0, 5), &h->groups,
		                              &h->ngroups);
		if (rv == OM_EPROTO) {
			om__store_set_err(st, "host get", "malformed groups array");
			rv = OM_EDB;
		}
	}
	PQclear(r);
	if (rv != 0) {
		om_host_release(h);
		om_free(*facts);
		*facts = NULL;
		*facts_at_ms = 0;
	}
	return rv;
}
