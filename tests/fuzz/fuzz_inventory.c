/*
 * Fuzzes the Ansible INI inventory parser (proto/inventory.c) and checks what
 * it promises about a successful result: every name valid, every host with
 * an address and an IDC, counts within the protocol limits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "om/inventory.h"
#include "om/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_hosts(const struct om_host *hosts, size_t n)
{
	if (n > OM_MAX_HOSTS || (n > 0 && hosts == NULL))
		abort();
	for (size_t i = 0; i < n; i++) {
		const struct om_host *h = &hosts[i];

		if (!om_name_valid(h->name) || !om_name_valid(h->idc))
			abort();
		if (h->addr == NULL || h->addr[0] == '\0' || h->addr[0] == '-')
			abort();
		if (h->user != NULL && (h->user[0] == '\0' || h->user[0] == '-'))
			abort();
		if (h->port > 65535 || h->ngroups > OM_MAX_GROUPS)
			abort();
		if (h->ngroups > 0 && h->groups == NULL)
			abort();
		for (uint32_t k = 0; k < h->ngroups; k++) {
			if (!om_name_valid(h->groups[k]))
				abort();
			/* The built-in groups are never reported. */
			if (strcmp(h->groups[k], "all") == 0 ||
			    strcmp(h->groups[k], "ungrouped") == 0)
				abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct om_host *hosts = (struct om_host *)&size; /* must be reset */
	size_t n = 12345;
	char err[512];
	int rc;

	memset(err, 0x55, sizeof(err));
	/* Half of the inputs run with a default IDC, so more of them get through. */
	rc = om_inventory_parse_ini((const char *)data, size, size & 1 ? "dflt" : NULL, &hosts, &n,
	                            err, sizeof(err));
	if (rc == 0) {
		check_hosts(hosts, n);
		om_hosts_free(hosts, n);
	} else {
		if (hosts != NULL || n != 0)
			abort();
		if (rc != OM_EPROTO && rc != OM_EMSGSIZE && rc != OM_ENOMEM)
			abort();
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort();
	}
	return 0;
}
