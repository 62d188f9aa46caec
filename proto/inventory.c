/*
 * Ansible INI inventory import.  What is understood is described in
 * inventory.h; this file keeps the work bounded for a hostile or simply huge
 * file: lines, hosts, groups, parent links and range expansions are all
 * capped, hosts and groups are found through hash tables (no quadratic
 * merging), and each host's groups and IDC are resolved once at the end.
 *
 * Every name that leaves this file passed om_name_valid: an inventory is
 * where a host called "-oProxyCommand=..." would first get in.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "om/inventory.h"
#include "om/base.h"
#include "om/err.h"
#include "om/msg.h"

#define INV_MAX_LINE     65536         /* bytes per line, without the newline */
#define INV_MAX_DEPTH    32            /* :children nesting above a host's own groups */
#define INV_MAX_GROUPS   100000        /* distinct groups per file */
#define INV_MAX_PARENTS  OM_MAX_GROUPS /* more could never fit in a host's group list */
#define INV_MAX_MENTIONS 1000000       /* host entries incl. range expansion and repeats */
/* A host's own groups may also include the hidden "all" and "ungrouped". */
#define INV_MAX_HOST_GROUPS (OM_MAX_GROUPS + 2)

/* Fixed group slots created before the first line. */
#define G_ALL       0u
#define G_UNGROUPED 1u

struct group {
	char *name;
	char *idc;         /* idc= of [name:vars], NULL if none */
	uint32_t *parents; /* groups that list this one in their :children */
	uint32_t nparents;
	uint32_t stamp; /* last host walk that visited this group */
	bool hidden;    /* "all", "ungrouped": never reported in om_host.groups */
};

/* Parser-only facts about hosts[i]; the om_host itself is what we return. */
struct host_info {
	uint32_t *groups; /* groups the host is listed in directly, first seen first */
	uint32_t ngroups;
	size_t line; /* first line naming the host, for late errors */
};

struct tab_ent {
	const char *name; /* owned by the host or group */
	uint32_t idx;
};

struct name_tab {
	struct tab_ent *ent; /* NULL name: empty slot */
	size_t cap;          /* power of two */
	size_t n;
};

enum section { SEC_HOSTS, SEC_VARS, SEC_CHILDREN };

/* Host variables of one host line, pointing into the line. */
struct host_vars {
	const char *addr, *user, *idc;
	size_t addrlen, userlen, idclen;
	uint32_t port; /* 0: not given */
};

struct inv {
	struct om_host *hosts;
	struct host_info *info;
	size_t nhosts, caphosts;
	struct group *groups;
	size_t ngroups, capgroups;
	struct name_tab htab, gtab;
	enum section sec;
	uint32_t cur; /* group of the current section */
	size_t line;  /* 1-based; 0 once lines are done */
	size_t mentions;
	uint32_t stamp;
	struct walk {
		/*
		 * The groups of the last host resolved, nearest first.  Hosts
		 * from one range line share their groups, so the next host
		 * usually reuses this walk as it is.
		 */
		const uint32_t *from; /* the direct groups it was made from */
		uint32_t nfrom;
		uint32_t queue[INV_MAX_HOST_GROUPS];
		uint8_t depth[INV_MAX_HOST_GROUPS];
		uint32_t nq, nvisible;
	} walk;
	char *err;
	size_t errlen;
};

static int inv_err(struct inv *st, int rc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Formats "line N: ..." into the caller's buffer and returns rc. */
static int
inv_err(struct inv *st, int rc, const char *fmt, ...)
{
	va_list ap;
	int off = 0;

	if (st->err == NULL || st->errlen == 0)
		return rc;
	if (st->line > 0)
		off = snprintf(st->err, st->errlen, "line %zu: ", st->line);
	if (off < 0 || (size_t)off >= st->errlen)
		return rc;
	va_start(ap, fmt);
	vsnprintf(st->err + off, st->errlen - (size_t)off, fmt, ap);
	va_end(ap);
	return rc;
}

static int
nomem(struct inv *st)
{
	return inv_err(st, OM_ENOMEM, "out of memory");
}

/*
 * Shows at most 64 bytes of untrusted text as printable ASCII for an error
 * message: the message ends up on a terminal.  out needs 64 * 4 + 4 bytes.
 */
#define SHOW_LEN (64 * 4 + 4)
static const char *
show(const char *s, size_t n, char *out)
{
	size_t o = 0, lim = n > 64 ? 64 : n;

	for (size_t i = 0; i < lim; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			snprintf(out + o, 5, "\\x%02x", c);
			o += 4;
		}
	}
	if (n > lim) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* s..s+n as a name: copied into buf (OM_MAX_NAME + 1 bytes) and checked. */
static bool
name_ok(const char *s, size_t n, char *buf)
{
	if (n == 0 || n > OM_MAX_NAME)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return om_name_valid(buf);
}

/* ssh user names: POSIX portable characters plus @ and $ (domain and machine accounts). */
static bool
user_ok(const char *s, size_t n)
{
	if (n == 0 || n > OM_MAX_NAME || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\0' || (!is_alnum(s[i]) && strchr("._-@$", s[i]) == NULL))
			return false;
	return true;
}

/* DNS names and IPv4/IPv6 literals (with a %zone); never an option to ssh. */
static bool
addr_ok(const char *s, size_t n)
{
	if (n == 0 || n > OM_MAX_NAME || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\0' || (!is_alnum(s[i]) && strchr("._-:%", s[i]) == NULL))
			return false;
	return true;
}

bool
om_host_addr_valid(const char *s)
{
	return s != NULL && addr_ok(s, strlen(s));
}

bool
om_host_user_valid(const char *s)
{
	return s != NULL && user_ok(s, strlen(s));
}

/* Decimal 1..65535 only: no sign, no spaces, no hex. */
static bool
port_parse(const char *s, size_t n, uint32_t *out)
{
	uint32_t v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return false;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*out = v;
	return true;
}

/* --- name tables ---------------------------------------------------------- */

static uint64_t
hash_name(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static bool
tab_find(const struct name_tab *t, const char *s, size_t n, uint32_t *idx)
{
	size_t i;

	if (t->cap == 0)
		return false;
	for (i = hash_name(s, n) & (t->cap - 1); t->ent[i].name != NULL;
	     i = (i + 1) & (t->cap - 1)) {
		if (strncmp(t->ent[i].name, s, n) == 0 && t->ent[i].name[n] == '\0') {
			*idx = t->ent[i].idx;
			return true;
		}
	}
	return false;
}

static void
tab_insert(struct tab_ent *ent, size_t cap, const char *name, uint32_t idx)
{
	size_t i = hash_name(name, strlen(name)) & (cap - 1);

	while (ent[i].name != NULL)
		i = (i + 1) & (cap - 1);
	ent[i].name = name;
	ent[i].idx = idx;
}

/* name must not be in the table yet; it stays owned by the caller. */
static int
tab_put(struct name_tab *t, const char *name, uint32_t idx)
{
	/* Kept at most half full so probe runs stay short. */
	if ((t->n + 1) * 2 > t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 64;
		struct tab_ent *ne = om_calloc(ncap, sizeof(*ne));

		if (ne == NULL)
			return OM_ENOMEM;
		for (size_t i = 0; i < t->cap; i++)
			if (t->ent[i].name != NULL)
				tab_insert(ne, ncap, t->ent[i].name, t->ent[i].idx);
		om_free(t->ent);
		t->ent = ne;
		t->cap = ncap;
	}
	tab_insert(t->ent, t->cap, name, idx);
	t->n++;
	return 0;
}

/* --- groups ---------------------------------------------------------------- */

/* Finds or creates the group s..s+n (already validated); its index in *idx. */
static int
group_get(struct inv *st, const char *s, size_t n, uint32_t *idx)
{
	struct group *g;

	if (tab_find(&st->gtab, s, n, idx))
		return 0;
	/* Plus the two built-in groups. */
	if (st->ngroups >= INV_MAX_GROUPS + 2)
		return inv_err(st, OM_EMSGSIZE, "more than %d groups", INV_MAX_GROUPS);
	if (st->ngroups == st->capgroups) {
		size_t ncap = st->capgroups ? st->capgroups * 2 : 16;
		struct group *ng = om_realloc(st->groups, ncap * sizeof(*ng));

		if (ng == NULL)
			return nomem(st);
		st->groups = ng;
		st->capgroups = ncap;
	}
	g = &st->groups[st->ngroups];
	memset(g, 0, sizeof(*g));
	if ((g->name = om_strndup(s, n)) == NULL)
		return nomem(st);
	st->ngroups++;
	if (tab_put(&st->gtab, g->name, (uint32_t)(st->ngroups - 1)) != 0)
		return nomem(st);
	*idx = (uint32_t)(st->ngroups - 1);
	return 0;
}

static int
group_add_parent(struct inv *st, uint32_t child, uint32_t parent)
{
	struct group *g = &st->groups[child];
	uint32_t *np;
	char buf[SHOW_LEN];

	for (uint32_t i = 0; i < g->nparents; i++)
		if (g->parents[i] == parent)
			return 0;
	if (g->nparents >= INV_MAX_PARENTS)
		return inv_err(st, OM_EPROTO, "group '%s' has more than %d parent groups",
		               show(g->name, strlen(g->name), buf), INV_MAX_PARENTS);
	np = om_realloc(g->parents, (g->nparents + 1) * sizeof(*np));
	if (np == NULL)
		return nomem(st);
	g->parents = np;
	g->parents[g->nparents++] = parent;
	return 0;
}

/* --- hosts ----------------------------------------------------------------- */

static int
replace_str(char **dst, const char *s, size_t n)
{
	char *d = om_strndup(s, n);

	if (d == NULL)
		return OM_ENOMEM;
	om_free(*dst);
	*dst = d;
	return 0;
}

/* Adds (or merges into) host name, listed in the current section's group. */
static int
host_add(struct inv *st, const char *name, size_t nlen, const struct host_vars *v)
{
	struct om_host *h;
	struct host_info *hi;
	uint32_t idx;
	char buf[SHOW_LEN];

	if (++st->mentions > INV_MAX_MENTIONS)
		return inv_err(st, OM_EMSGSIZE, "more than %d host entries (ranges included)",
		               INV_MAX_MENTIONS);
	if (!om_name_valid(name))
		return inv_err(st, OM_EPROTO, "invalid host name '%s'", show(name, nlen, buf));

	if (!tab_find(&st->htab, name, nlen, &idx)) {
		if (st->nhosts >= OM_MAX_HOSTS)
			return inv_err(st, OM_EMSGSIZE, "more than %d hosts", OM_MAX_HOSTS);
		if (st->nhosts == st->caphosts) {
			size_t ncap = st->caphosts ? st->caphosts * 2 : 64;
			struct om_host *nh;
			struct host_info *ni;

			if (ncap > OM_MAX_HOSTS)
				ncap = OM_MAX_HOSTS;
			nh = om_realloc(st->hosts, ncap * sizeof(*nh));
			if (nh == NULL)
				return nomem(st);
			st->hosts = nh;
			ni = om_realloc(st->info, ncap * sizeof(*ni));
			if (ni == NULL)
				return nomem(st);
			st->info = ni;
			st->caphosts = ncap;
		}
		idx = (uint32_t)st->nhosts;
		h = &st->hosts[idx];
		hi = &st->info[idx];
		memset(h, 0, sizeof(*h));
		memset(hi, 0, sizeof(*hi));
		hi->line = st->line;
		if ((h->name = om_strndup(name, nlen)) == NULL)
			return nomem(st);
		st->nhosts++;
		if (tab_put(&st->htab, h->name, idx) != 0)
			return nomem(st);
	}
	h = &st->hosts[idx];
	hi = &st->info[idx];

	/* A later line overrides an earlier one, as in Ansible. */
	if (v->addr != NULL && replace_str(&h->addr, v->addr, v->addrlen) != 0)
		return nomem(st);
	if (v->user != NULL && replace_str(&h->user, v->user, v->userlen) != 0)
		return nomem(st);
	if (v->idc != NULL && replace_str(&h->idc, v->idc, v->idclen) != 0)
		return nomem(st);
	if (v->port != 0)
		h->port = v->port;

	for (uint32_t i = 0; i < hi->ngroups; i++)
		if (hi->groups[i] == st->cur)
			return 0;
	if (hi->ngroups >= INV_MAX_HOST_GROUPS)
		return inv_err(st, OM_EPROTO, "host '%s' is in more than %d groups", h->name,
		               OM_MAX_GROUPS);
	{
		uint32_t *ng = om_realloc(hi->groups, (hi->ngroups + 1) * sizeof(*ng));

		if (ng == NULL)
			return nomem(st);
		hi->groups = ng;
		hi->groups[hi->ngroups++] = st->cur;
	}
	return 0;
}

/*
 * Expands the ranges of pat (web[01:03], db-[a:c], also several, also with
 * a :step) and adds each resulting host.  name holds the nlen bytes built so
 * far; it has room for OM_MAX_NAME + 1.  Recursion depth is bounded by the
 * name length: every range adds at least one byte.
 */
static int
expand(struct inv *st, const char *pat, size_t n, char *name, size_t nlen,
       const struct host_vars *v)
{
	const char *lb = memchr(pat, '[', n), *rb, *in, *c1, *c2;
	size_t plen = lb != NULL ? (size_t)(lb - pat) : n, inlen, blen, elen;
	unsigned long beg = 0, end = 0, step = 1;
	bool alpha;
	int width = 0, rc;
	char buf[SHOW_LEN];

	if (nlen + plen > OM_MAX_NAME)
		return inv_err(st, OM_EPROTO, "host name longer than %d bytes", OM_MAX_NAME);
	memcpy(name + nlen, pat, plen);
	nlen += plen;
	if (lb == NULL) {
		name[nlen] = '\0';
		return host_add(st, name, nlen, v);
	}

	rb = memchr(lb, ']', n - plen);
	if (rb == NULL)
		return inv_err(st, OM_EPROTO, "unterminated host range '%s'",
		               show(lb, n - plen, buf));
	in = lb + 1;
	inlen = (size_t)(rb - in);
	c1 = memchr(in, ':', inlen);
	if (c1 == NULL)
		goto bad;
	blen = (size_t)(c1 - in);
	c2 = memchr(c1 + 1, ':', (size_t)(rb - c1 - 1));
	elen = (size_t)((c2 != NULL ? c2 : rb) - c1 - 1);
	if (blen == 0 || elen == 0)
		goto bad;
	if (c2 != NULL) {
		size_t slen = (size_t)(rb - c2 - 1);

		step = 0;
		if (slen == 0 || slen > 6)
			goto bad;
		for (size_t i = 0; i < slen; i++) {
			if (!is_digit(c2[1 + i]))
				goto bad;
			step = step * 10 + (unsigned long)(c2[1 + i] - '0');
		}
		if (step == 0)
			goto bad;
	}

	alpha = !is_digit(in[0]);
	if (alpha) {
		/* [a:c]: one letter each end, same case. */
		bool lower = in[0] >= 'a' && in[0] <= 'z';

		if (blen != 1 || elen != 1 || !is_alnum(in[0]) || !is_alnum(c1[1]) ||
		    is_digit(c1[1]) || lower != (c1[1] >= 'a' && c1[1] <= 'z'))
			goto bad;
		beg = (unsigned char)in[0];
		end = (unsigned char)c1[1];
	} else {
		/* 9 digits keep the arithmetic far from overflow. */
		if (blen > 9 || elen > 9)
			goto bad;
		for (size_t i = 0; i < blen; i++) {
			if (!is_digit(in[i]))
				goto bad;
			beg = beg * 10 + (unsigned long)(in[i] - '0');
		}
		for (size_t i = 0; i < elen; i++) {
			if (!is_digit(c1[1 + i]))
				goto bad;
			end = end * 10 + (unsigned long)(c1[1 + i] - '0');
		}
		/* Zero padding (web[01:10]) is kept: the width of the start. */
		if (in[0] == '0' && blen > 1) {
			if (blen != elen)
				return inv_err(st, OM_EPROTO,
				               "host range '%s' pads the start but not the end to "
				               "the same width",
				               show(lb, (size_t)(rb - lb + 1), buf));
			width = (int)blen;
		}
	}
	if (beg > end)
		return inv_err(st, OM_EPROTO, "host range '%s' goes backwards",
		               show(lb, (size_t)(rb - lb + 1), buf));

	for (unsigned long i = beg; i <= end; i += step) {
		char num[16];
		int k;

		if (alpha) {
			num[0] = (char)i;
			k = 1;
		} else {
			k = snprintf(num, sizeof(num), "%0*lu", width, i);
		}
		if (nlen + (size_t)k > OM_MAX_NAME)
			return inv_err(st, OM_EPROTO, "host name longer than %d bytes",
			               OM_MAX_NAME);
		memcpy(name + nlen, num, (size_t)k);
		rc = expand(st, rb + 1, (size_t)(pat + n - rb - 1), name, nlen + (size_t)k, v);
		if (rc != 0)
			return rc;
	}
	return 0;

bad:
	return inv_err(st, OM_EPROTO, "bad host range '%s' (want [1:9], [01:10], [a:f] or [1:9:2])",
	               show(lb, (size_t)(rb - lb + 1), buf));
}

/*
 * Reads one value at s[*i]: 'quoted', "quoted" (no escapes, as Ansible's
 * shlex without them) or up to a blank.  Leaves *i after it.
 */
static int
read_value(struct inv *st, const char *s, size_t n, size_t *i, const char **val, size_t *vlen)
{
	size_t j = *i;

	if (j < n && (s[j] == '"' || s[j] == '\'')) {
		const char *close = memchr(s + j + 1, s[j], n - j - 1);

		if (close == NULL)
			return inv_err(st, OM_EPROTO, "unterminated %c quote",
			               s[j] == '"' ? '"' : '\'');
		*val = s + j + 1;
		*vlen = (size_t)(close - s - j - 1);
		j = (size_t)(close - s) + 1;
		if (j < n && !is_blank(s[j]))
			return inv_err(st, OM_EPROTO, "text right after a closing quote");
	} else {
		*val = s + j;
		while (j < n && !is_blank(s[j]))
			j++;
		*vlen = (size_t)(s + j - *val);
	}
	*i = j;
	return 0;
}

static bool
key_is(const char *k, size_t klen, const char *want)
{
	return strlen(want) == klen && memcmp(k, want, klen) == 0;
}

/* "host[:port] [key=value ...] [# comment]" in a hosts section. */
static int
parse_host_line(struct inv *st, const char *s, size_t n)
{
	struct host_vars v;
	const char *pat = s, *colon, *lb, *rb;
	size_t plen, i = 0;
	char name[OM_MAX_NAME + 1];
	char buf[SHOW_LEN], buf2[SHOW_LEN];

	memset(&v, 0, sizeof(v));
	while (i < n && !is_blank(s[i]))
		i++;
	plen = i;

	/*
	 * host:port as Ansible writes it.  A colon inside [1:3], or after an
	 * unclosed '[', belongs to a range; expand() reports the latter.
	 */
	colon = memrchr(pat, ':', plen);
	lb = memrchr(pat, '[', plen);
	rb = memrchr(pat, ']', plen);
	if (colon != NULL && (lb == NULL || (rb != NULL && rb > lb && colon > rb))) {
		size_t tail = plen - (size_t)(colon - pat) - 1;

		if (!port_parse(colon + 1, tail, &v.port))
			return inv_err(st, OM_EPROTO, "bad port '%s' in '%s' (1..65535)",
			               show(colon + 1, tail, buf), show(pat, plen, buf2));
		plen = (size_t)(colon - pat);
	}

	while (i < n) {
		const char *k, *val, *eq;
		size_t klen, vlen;
		int rc;

		while (i < n && is_blank(s[i]))
			i++;
		if (i == n || s[i] == '#' || s[i] == ';')
			break;
		k = s + i;
		while (i < n && !is_blank(s[i]) && s[i] != '=')
			i++;
		if (i == n || s[i] != '=') {
			return inv_err(st, OM_EPROTO, "expected key=value after the host, got '%s'",
			               show(k, (size_t)(s + i - k), buf));
		}
		eq = s + i;
		klen = (size_t)(eq - k);
		if (klen == 0)
			return inv_err(st, OM_EPROTO, "'=' without a key");
		i++;
		if ((rc = read_value(st, s, n, &i, &val, &vlen)) != 0)
			return rc;

		if (key_is(k, klen, "ansible_host") || key_is(k, klen, "ansible_ssh_host")) {
			if (!addr_ok(val, vlen))
				return inv_err(st, OM_EPROTO, "bad %.*s '%s'", (int)klen, k,
				               show(val, vlen, buf));
			v.addr = val;
			v.addrlen = vlen;
		} else if (key_is(k, klen, "ansible_port") || key_is(k, klen, "ansible_ssh_port")) {
			if (!port_parse(val, vlen, &v.port))
				return inv_err(st, OM_EPROTO, "bad %.*s '%s' (1..65535)", (int)klen,
				               k, show(val, vlen, buf));
		} else if (key_is(k, klen, "ansible_user") || key_is(k, klen, "ansible_ssh_user")) {
			if (!user_ok(val, vlen))
				return inv_err(st, OM_EPROTO, "bad %.*s '%s'", (int)klen, k,
				               show(val, vlen, buf));
			v.user = val;
			v.userlen = vlen;
		} else if (key_is(k, klen, "idc")) {
			if (!name_ok(val, vlen, name))
				return inv_err(st, OM_EPROTO, "invalid IDC name '%s'",
				               show(val, vlen, buf));
			v.idc = val;
			v.idclen = vlen;
		}
	}
	if (plen == 0)
		return inv_err(st, OM_EPROTO, "missing host name");
	return expand(st, pat, plen, name, 0, &v);
}

/* "key=value" or "key = value" in a [group:vars] section; only idc is used. */
static int
parse_vars_line(struct inv *st, const char *s, size_t n)
{
	const char *eq = memchr(s, '=', n), *val;
	size_t klen, i, vlen;
	char name[OM_MAX_NAME + 1];
	char buf[SHOW_LEN];
	struct group *g;
	int rc;

	if (eq == NULL)
		return inv_err(st, OM_EPROTO, "expected key=value, got '%s'", show(s, n, buf));
	klen = (size_t)(eq - s);
	while (klen > 0 && is_blank(s[klen - 1]))
		klen--;
	if (klen == 0)
		return inv_err(st, OM_EPROTO, "'=' without a key");
	/* Other variables may hold anything up to the line end; they are not ours. */
	if (!key_is(s, klen, "idc"))
		return 0;

	i = (size_t)(eq - s) + 1;
	while (i < n && is_blank(s[i]))
		i++;
	if ((rc = read_value(st, s, n, &i, &val, &vlen)) != 0)
		return rc;
	while (i < n && is_blank(s[i]))
		i++;
	if (i < n && s[i] != '#' && s[i] != ';')
		return inv_err(st, OM_EPROTO, "unexpected text after idc value");
	if (!name_ok(val, vlen, name))
		return inv_err(st, OM_EPROTO, "invalid IDC name '%s'", show(val, vlen, buf));
	g = &st->groups[st->cur];
	if (replace_str(&g->idc, val, vlen) != 0)
		return nomem(st);
	return 0;
}

/* One child group name in a [group:children] section. */
static int
parse_child_line(struct inv *st, const char *s, size_t n)
{
	size_t i = 0, j;
	uint32_t child;
	char name[OM_MAX_NAME + 1];
	char buf[SHOW_LEN];
	int rc;

	while (i < n && !is_blank(s[i]))
		i++;
	j = i;
	while (j < n && is_blank(s[j]))
		j++;
	if (j < n && s[j] != '#' && s[j] != ';')
		return inv_err(st, OM_EPROTO, "expected one group name, got '%s'", show(s, n, buf));
	if (!name_ok(s, i, name))
		return inv_err(st, OM_EPROTO, "invalid group name '%s'", show(s, i, buf));
	if ((rc = group_get(st, s, i, &child)) != 0)
		return rc;
	return group_add_parent(st, child, st->cur);
}

/* "[name]", "[name:vars]" or "[name:children]", optionally followed by a comment. */
static int
parse_section(struct inv *st, const char *s, size_t n)
{
	const char *close = memchr(s, ']', n), *colon;
	size_t i, nlen;
	char name[OM_MAX_NAME + 1];
	char buf[SHOW_LEN];

	if (close == NULL)
		return inv_err(st, OM_EPROTO, "section header without ']'");
	for (i = (size_t)(close - s) + 1; i < n && is_blank(s[i]); i++)
		;
	if (i < n && s[i] != '#' && s[i] != ';')
		return inv_err(st, OM_EPROTO, "unexpected text after section header");

	nlen = (size_t)(close - s - 1);
	colon = memchr(s + 1, ':', nlen);
	st->sec = SEC_HOSTS;
	if (colon != NULL) {
		const char *suf = colon + 1;
		size_t slen = (size_t)(close - suf);

		if (key_is(suf, slen, "vars"))
			st->sec = SEC_VARS;
		else if (key_is(suf, slen, "children"))
			st->sec = SEC_CHILDREN;
		else
			return inv_err(st, OM_EPROTO,
			               "unknown section type ':%s' (want :vars or :children)",
			               show(suf, slen, buf));
		nlen = (size_t)(colon - s - 1);
	}
	if (!name_ok(s + 1, nlen, name))
		return inv_err(st, OM_EPROTO, "invalid group name '%s'", show(s + 1, nlen, buf));
	return group_get(st, s + 1, nlen, &st->cur);
}

static int
parse_line(struct inv *st, const char *s, size_t n)
{
	while (n > 0 && is_blank(s[0])) {
		s++;
		n--;
	}
	while (n > 0 && is_blank(s[n - 1]))
		n--;
	if (n == 0 || s[0] == '#' || s[0] == ';')
		return 0;
	if (s[0] == '[')
		return parse_section(st, s, n);
	switch (st->sec) {
	case SEC_HOSTS:
		return parse_host_line(st, s, n);
	case SEC_VARS:
		return parse_vars_line(st, s, n);
	case SEC_CHILDREN:
		return parse_child_line(st, s, n);
	}
	return OM_EPROTO;
}

/* --- resolution ------------------------------------------------------------ */

/*
 * Walks up from a host's own groups through :children links, breadth first
 * so that the nearest groups come first, into st->walk.
 */
static int
walk_groups(struct inv *st, const struct host_info *hi, const char *host)
{
	struct walk *w = &st->walk;

	if (w->from != NULL && w->nfrom == hi->ngroups &&
	    memcmp(w->from, hi->groups, hi->ngroups * sizeof(*hi->groups)) == 0)
		return 0;
	w->from = NULL;
	w->nq = 0;
	w->nvisible = 0;
	st->stamp++;
	for (uint32_t k = 0; k < hi->ngroups; k++) {
		struct group *g = &st->groups[hi->groups[k]];

		/* host_add already removed duplicates and capped the count. */
		g->stamp = st->stamp;
		w->queue[w->nq] = hi->groups[k];
		w->depth[w->nq++] = 0;
		if (!g->hidden)
			w->nvisible++;
	}
	if (w->nvisible > OM_MAX_GROUPS)
		return inv_err(st, OM_EPROTO, "host '%s' is in more than %d groups", host,
		               OM_MAX_GROUPS);
	for (uint32_t head = 0; head < w->nq; head++) {
		const struct group *g = &st->groups[w->queue[head]];

		for (uint32_t k = 0; k < g->nparents; k++) {
			struct group *p = &st->groups[g->parents[k]];

			if (p->stamp == st->stamp)
				continue; /* seen, also what makes cycles harmless */
			if (w->depth[head] + 1 > INV_MAX_DEPTH)
				return inv_err(st, OM_EPROTO,
				               "groups of host '%s' nest more than %d deep (at "
				               "group '%s')",
				               host, INV_MAX_DEPTH, p->name);
			if (w->nq == INV_MAX_HOST_GROUPS ||
			    (!p->hidden && w->nvisible == OM_MAX_GROUPS))
				return inv_err(
				        st, OM_EPROTO,
				        "host '%s' is in more than %d groups (parents included)",
				        host, OM_MAX_GROUPS);
			p->stamp = st->stamp;
			w->queue[w->nq] = g->parents[k];
			w->depth[w->nq++] = (uint8_t)(w->depth[head] + 1);
			if (!p->hidden)
				w->nvisible++;
		}
	}
	w->from = hi->groups;
	w->nfrom = hi->ngroups;
	return 0;
}

/* Fills host i's group names, IDC and default address. */
static int
resolve_host(struct inv *st, size_t i, const char *default_idc)
{
	struct om_host *h = &st->hosts[i];
	const struct walk *w = &st->walk;
	uint32_t found = UINT32_MAX;
	const char *idc = NULL;
	int rc;

	st->line = st->info[i].line;
	if ((rc = walk_groups(st, &st->info[i], h->name)) != 0)
		return rc;

	if (h->idc == NULL) {
		/* The nearest groups that set an IDC decide; they must agree. */
		for (uint32_t k = 0; k < w->nq; k++) {
			const struct group *g = &st->groups[w->queue[k]];

			if (found != UINT32_MAX && w->depth[k] > w->depth[found])
				break;
			if (g->idc == NULL)
				continue;
			if (found == UINT32_MAX) {
				found = k;
				idc = g->idc;
			} else if (strcmp(g->idc, idc) != 0) {
				return inv_err(st, OM_EPROTO,
				               "host '%s' gets IDC '%s' from group '%s' and '%s' "
				               "from '%s'",
				               h->name, idc, st->groups[w->queue[found]].name,
				               g->idc, g->name);
			}
		}
		if (idc == NULL)
			idc = st->groups[G_ALL].idc; /* [all:vars] reaches every host */
		if (idc == NULL)
			idc = default_idc;
		if (idc == NULL)
			return inv_err(st, OM_EPROTO,
			               "host '%s' has no IDC (set idc=... on it or its group)",
			               h->name);
		if ((h->idc = om_strdup(idc)) == NULL)
			return nomem(st);
	}
	if (h->addr == NULL && (h->addr = om_strdup(h->name)) == NULL)
		return nomem(st);

	if (w->nvisible > 0) {
		h->groups = om_calloc(w->nvisible, sizeof(*h->groups));
		if (h->groups == NULL)
			return nomem(st);
		for (uint32_t k = 0; k < w->nq; k++) {
			const struct group *g = &st->groups[w->queue[k]];

			if (g->hidden)
				continue;
			if ((h->groups[h->ngroups] = om_strdup(g->name)) == NULL)
				return nomem(st);
			h->ngroups++;
		}
	}
	return 0;
}

static void
inv_release(struct inv *st)
{
	for (size_t i = 0; i < st->ngroups; i++) {
		om_free(st->groups[i].name);
		om_free(st->groups[i].idc);
		om_free(st->groups[i].parents);
	}
	om_free(st->groups);
	for (size_t i = 0; i < st->nhosts; i++)
		om_free(st->info[i].groups);
	om_free(st->info);
	om_free(st->htab.ent);
	om_free(st->gtab.ent);
}

int
om_inventory_parse_ini(const char *text, size_t len, const char *default_idc,
                       struct om_host **hosts, size_t *n, char *err, size_t errlen)
{
	struct inv st;
	size_t p = 0;
	int rc;

	memset(&st, 0, sizeof(st));
	st.err = err;
	st.errlen = errlen;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (hosts == NULL || n == NULL || (text == NULL && len > 0))
		return inv_err(&st, OM_EINVAL, "no inventory text or result");
	*hosts = NULL;
	*n = 0;
	if (default_idc != NULL && !om_name_valid(default_idc)) {
		char buf[SHOW_LEN];

		return inv_err(&st, OM_EINVAL, "invalid default IDC name '%s'",
		               show(default_idc, strnlen(default_idc, 65), buf));
	}

	if ((rc = group_get(&st, "all", 3, &st.cur)) != 0 ||
	    (rc = group_get(&st, "ungrouped", 9, &st.cur)) != 0)
		goto out;
	st.groups[G_ALL].hidden = true;
	st.groups[G_UNGROUPED].hidden = true;
	st.cur = G_UNGROUPED;
	st.sec = SEC_HOSTS;

	/* Editors on some systems write a UTF-8 byte order mark. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		p = 3;
	while (p < len) {
		const char *s = text + p;
		const char *nl = memchr(s, '\n', len - p);
		size_t linelen = nl != NULL ? (size_t)(nl - s) : len - p;

		st.line++;
		if (linelen > INV_MAX_LINE) {
			rc = inv_err(&st, OM_EMSGSIZE, "longer than %d bytes", INV_MAX_LINE);
			goto out;
		}
		if (memchr(s, '\0', linelen) != NULL) {
			rc = inv_err(&st, OM_EPROTO, "NUL byte");
			goto out;
		}
		if ((rc = parse_line(&st, s, linelen)) != 0)
			goto out;
		p += linelen + (nl != NULL ? 1 : 0);
	}

	for (size_t i = 0; i < st.nhosts; i++)
		if ((rc = resolve_host(&st, i, default_idc)) != 0)
			goto out;
	rc = 0;

out:
	if (rc == 0) {
		*hosts = st.hosts;
		*n = st.nhosts;
	} else {
		om_hosts_free(st.hosts, st.nhosts);
	}
	inv_release(&st);
	return rc;
}
