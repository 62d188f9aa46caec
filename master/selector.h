/*
 * Target selectors: which hosts a job runs on.
 *
 *   all            every host
 *   idc:NAME       hosts of one IDC
 *   group:NAME     hosts in a group
 *   NAME or GLOB   a host name, or an fnmatch glob like web-*  ([...] and ? too)
 *   A,B            union
 *   !A             exclusion: removes what A matches from the union of the
 *                  positive terms (a selector of only exclusions means all
 *                  hosts minus them)
 *
 * Whitespace around terms is ignored; an empty term, an empty name after
 * idc: or group:, or an unknown prefix word with a colon is an error.
 */
#ifndef OM_MASTER_SELECTOR_H
#define OM_MASTER_SELECTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "om/msg.h"

struct om_selector;

/* Parses s; on error returns OM_EINVAL with a message in err.  Caller frees *out. */
int om_selector_parse(const char *s, struct om_selector **out, char *err, size_t errlen);
bool om_selector_match(const struct om_selector *sel, const struct om_host *h);
void om_selector_free(struct om_selector *sel);

struct om_host_filter; /* store.h */
/*
 * When every positive term of sel is a host name, an IDC or a group, fills f
 * with them (pointers into sel, arrays freed by om_selector_filter_release)
 * and returns true: only those hosts need loading.  false (f untouched)
 * when sel may match any host: all, a glob, only exclusions, or no memory.
 */
bool om_selector_filter(const struct om_selector *sel, struct om_host_filter *f);
void om_selector_filter_release(struct om_host_filter *f);

#endif
