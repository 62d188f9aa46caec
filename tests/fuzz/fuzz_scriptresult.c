/*
 * Fuzzes the script module result parser (worker/scriptmod.c,
 * om_scriptmod_parse_result): what a module prints on a managed host's
 * stdout, untrusted by the worker.
 *
 * Input: the raw stdout bytes, NULs and all.
 *
 * Beyond not crashing: a refusal leaves an empty result and a terminated
 * reason; an accepted result is a JSON object whose compact text parses
 * again into the same result and the same text (it is what the worker
 * records), and its msg is a string without NUL bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "scriptmod.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
streq_opt(const char *a, const char *b)
{
	return (a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct om_scriptmod_result r, again;
	char err[256];
	int rc;

	/* The worker caps a module's stdout: longer output never gets here. */
	if (size > OM_SCRIPTMOD_MAX_OUTPUT)
		return 0;
	memset(&r, 0x55, sizeof(r));
	memset(err, 0x55, sizeof(err));
	rc = om_scriptmod_parse_result(size ? data : NULL, size, &r, err, sizeof(err));
	if (rc != 0) {
		if ((rc != OM_EPROTO && rc != OM_ENOMEM) || r.json != NULL || r.msg != NULL ||
		    r.changed || r.failed)
			abort();
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort();
		om_scriptmod_result_free(&r);
		return 0;
	}
	if (r.json == NULL || r.json[0] != '{')
		abort();

	/* The recorded text is a result too, the same one, and canonical. */
	memset(&again, 0x55, sizeof(again));
	if (om_scriptmod_parse_result((const uint8_t *)r.json, strlen(r.json), &again, err,
	                              sizeof(err)) != 0)
		abort();
	if (strcmp(r.json, again.json) != 0 || !streq_opt(r.msg, again.msg) ||
	    r.changed != again.changed || r.failed != again.failed)
		abort();
	om_scriptmod_result_free(&again);
	om_scriptmod_result_free(&r);
	/* freeing twice is harmless: the result is emptied */
	om_scriptmod_result_free(&r);
	return 0;
}
