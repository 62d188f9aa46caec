/*
 * Ansible INI inventory import: what `omctl hosts import FILE` reads and
 * what POST /api/v1/hosts/import takes (om-master), in the shared library.
 *
 * Understood: [group] sections of host lines, [group:vars] with idc=NAME,
 * [group:children], and per-host variables ansible_host, ansible_port,
 * ansible_user and idc on the host line.  A host's IDC comes from its own
 * idc variable, else from the idc variable of a group it belongs to
 * (directly or through :children), else from default_idc.  Other variables
 * are ignored; comments start with # or ;.  Hosts named in several groups
 * are merged.  Ranges like web[1:3] expand (up to OM_MAX_HOSTS hosts).
 * Errors name the line.
 */
#ifndef OM_INVENTORY_H
#define OM_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>

#include "om/msg.h"

/*
 * Parses len bytes of text (need not be NUL-terminated).  On success *hosts
 * (caller frees with om_hosts_free) holds *n hosts; on failure OM_EPROTO (or
 * OM_ENOMEM, OM_EMSGSIZE) and a message like "line 7: ..." in err.
 */
int om_inventory_parse_ini(const char *text, size_t len, const char *default_idc,
                           struct om_host **hosts, size_t *n, char *err, size_t errlen);

/*
 * The rules the parser holds host fields to, for other ways in (REST):
 * an address is a DNS name or an IPv4/IPv6 literal (with a %zone), a login
 * user portable characters plus @ and $; 1..OM_MAX_NAME bytes, never
 * starting with '-' (never an option to ssh).
 */
bool om_host_addr_valid(const char *s);
bool om_host_user_valid(const char *s);

#endif
