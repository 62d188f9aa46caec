/*
 * The module catalog: what the workers say they can run (MODULES, sent once
 * after they connect), kept in the store, shown to omctl and used to refuse
 * a job whose module nobody offers or whose parameters do not fit the
 * module's schema before anything is recorded or dispatched.
 *
 * A worker is trusted to run tasks, not to feed the master arbitrary JSON:
 * every schema is parsed by om_params_schema_parse (bounded, typed) and only
 * its canonical re-serialisation is stored.  A bad schema refuses that one
 * module (logged and audited); the rest of the catalog is kept.
 */
#include <stdio.h>
#include <string.h>

#include "master_int.h"
#include "om/params.h"

/* The canonical form of one announced module's schema, or a reason in err. */
static int
canonical_schema(const char *json, char **out, char *err, size_t errlen)
{
	struct om_plugin_param *params = NULL;
	size_t n = 0;
	int rv;

	*out = NULL;
	if ((rv = om_params_schema_parse(json, &params, &n, err, errlen)) != 0)
		return rv;
	if ((rv = om_params_schema_json(params, n, out)) != 0)
		snprintf(err, errlen, "cannot serialise the schema: %s", om_strerror(rv));
	om_params_schema_free(params, n);
	return rv;
}

void
master_op_modules(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	const struct om_module_info *in = r->msg.u.modules.modules;
	uint32_t nin = r->msg.u.modules.nmodules;
	struct om_module_info *keep;
	struct om_msg ack = {.type = OM_MSG_ACK};
	size_t nkeep = 0, refused = 0, i, j;
	char err[256];
	int rv;

	if ((keep = om_calloc((size_t)nin + 1, sizeof(*keep))) == NULL) {
		reply_error(r, OM_ENOMEM, "master out of memory");
		return;
	}
	for (i = 0; i < nin; i++) {
		const struct om_module_info *mi = &in[i];
		char *schema = NULL;

		err[0] = '\0';
		for (j = 0; j < nkeep; j++)
			if (strcmp(keep[j].name, mi->name) == 0)
				break;
		if (j < nkeep) {
			snprintf(err, sizeof(err), "announced twice");
			rv = OM_EPROTO;
		} else if (mi->version[0] == '\0' || mi->kind[0] == '\0') {
			snprintf(err, sizeof(err), "no version or kind");
			rv = OM_EPROTO;
		} else {
			rv = canonical_schema(mi->schema, &schema, err, sizeof(err));
		}
		if (rv == OM_ENOMEM)
			break;
		if (rv != 0) {
			refused++;
			om_warn("%s: module '%s' refused: %s", p->who, mi->name, err);
			audit(m, p->who, p->source, "modules.announce", mi->name, "refused",
			      "bad module: %s", err);
			continue;
		}
		keep[nkeep] = *mi; /* shallow: the request keeps its strings */
		keep[nkeep].schema = schema;
		nkeep++;
	}
	if (i < nin) {
		reply_error(r, OM_ENOMEM, "master out of memory");
	} else if ((rv = om_store_modules_put(m->store, p->w->name, p->w->idc, keep, nkeep)) != 0) {
		om_err("cannot store the module catalog of %s: %s", p->who,
		       om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "cannot store the module catalog: %s", om_strerror(rv));
	} else {
		om_info("%s (IDC '%s') offers %zu modules%s", p->who, p->w->idc, nkeep,
		        refused ? ", some refused" : "");
		om_rpc_reply(r, &ack);
	}
	for (j = 0; j < nkeep; j++)
		om_free(keep[j].schema);
	om_free(keep);
}

void
master_op_modules_list(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_msg rep = {.type = OM_MSG_MODULES};
	struct om_module_info *mods = NULL;
	size_t n = 0;
	int rv;

	(void)p;
	if ((rv = om_store_modules_list(m->store, &mods, &n)) != 0) {
		om_err("cannot read the module catalog: %s", om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "cannot read the module catalog: %s", om_strerror(rv));
		return;
	}
	if (n > OM_MAX_MODULES) {
		/* the reply has the decoder's bound; say so rather than cut silently */
		reply_error(r, OM_EMSGSIZE, "%zu modules, more than one reply holds (%d)", n,
		            OM_MAX_MODULES);
	} else {
		rep.u.modules.modules = mods;
		rep.u.modules.nmodules = (uint32_t)n;
		om_rpc_reply(r, &rep);
	}
	om_modules_free(mods, n);
}

void
master_op_module_show(struct master *m, struct om_rpc_req *r, struct peer *p)
{
	struct om_msg rep = {.type = OM_MSG_MODULES};
	const char *name = r->msg.u.by_name.name;
	struct om_module_info *mi = NULL;
	int rv;

	(void)p;
	rv = om_store_module_get(m->store, name, &mi, NULL, NULL);
	if (rv == OM_ENOTFOUND) {
		reply_error(r, OM_ENOTFOUND, "unknown module '%s': no worker offers it", name);
		return;
	}
	if (rv != 0) {
		om_err("cannot read module '%s': %s", name, om_store_errmsg(m->store));
		reply_error(r, OM_EDB, "cannot read the module catalog: %s", om_strerror(rv));
		return;
	}
	rep.u.modules.modules = mi;
	rep.u.modules.nmodules = 1;
	om_rpc_reply(r, &rep);
	om_modules_free(mi, 1);
}

int
modules_check_submit(struct master *m, const struct om_msg *sub, char *field, size_t fieldlen,
                     char *err, size_t errlen)
{
	const char *name = sub->u.submit.module, *at = NULL;
	struct om_plugin_param *params = NULL;
	struct om_module_info *mi = NULL;
	size_t n = 0;
	char why[256];
	int rv;

	snprintf(field, fieldlen, "%s", "");
	rv = om_store_module_get(m->store, name, &mi, NULL, NULL);
	if (rv == OM_ENOTFOUND) {
		snprintf(field, fieldlen, "%s", "module");
		snprintf(err, errlen, "unknown module '%s': no worker offers it", name);
		return OM_EINVAL;
	}
	if (rv != 0) {
		om_err("cannot read module '%s': %s", name, om_store_errmsg(m->store));
		snprintf(err, errlen, "cannot read the module catalog: %s", om_strerror(rv));
		return rv;
	}
	/* stored schemas were parsed before they were stored: a failure here is the database's */
	if ((rv = om_params_schema_parse(mi->schema, &params, &n, why, sizeof(why))) != 0) {
		om_err("module '%s': stored schema refused: %s", name, why);
		snprintf(err, errlen, "module '%s' has no usable schema", name);
		om_modules_free(mi, 1);
		return rv == OM_ENOMEM ? rv : OM_EINVAL;
	}
	rv = om_params_validate_at(params, n, sub->u.submit.params, sub->u.submit.nparams, &at, err,
	                           errlen);
	/* at points into the schema or the request: copied before the schema goes */
	if (rv != 0 && at != NULL)
		snprintf(field, fieldlen, "params.%s", at);
	om_params_schema_free(params, n);
	om_modules_free(mi, 1);
	return rv;
}
