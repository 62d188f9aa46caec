/* Ansible INI inventory import: proto/inventory.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "om/inventory.h"
#include "om/msg.h"

struct parsed {
	struct om_host *hosts;
	size_t n;
	int rc;
	char err[512];
};

static void
parse(struct parsed *p, const char *text, const char *default_idc)
{
	memset(p, 0, sizeof(*p));
	p->rc = om_inventory_parse_ini(text, strlen(text), default_idc, &p->hosts, &p->n, p->err,
	                               sizeof(p->err));
}

static void
parsed_free(struct parsed *p)
{
	om_hosts_free(p->hosts, p->n);
	p->hosts = NULL;
	p->n = 0;
}

static const struct om_host *
find(const struct parsed *p, const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->hosts[i].name, name) == 0)
			return &p->hosts[i];
	fail_msg("host '%s' not in the result", name);
	return NULL;
}

/* The host's groups joined by spaces, in the order the parser reports them. */
static const char *
groups_of(const struct om_host *h, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < h->ngroups; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? " " : "", h->groups[i]);
	return buf;
}

static void
assert_fails(const char *text, const char *default_idc, int rc, const char *want)
{
	struct parsed p;

	parse(&p, text, default_idc);
	if (p.rc != rc)
		fail_msg("rc %d (%s), want %d", p.rc, p.err, rc);
	assert_null(p.hosts);
	assert_int_equal(p.n, 0);
	if (strstr(p.err, want) == NULL)
		fail_msg("error '%s' lacks '%s'", p.err, want);
}

static const char realistic[] =
        "# production inventory\n"
        "; exported from the old CMDB\n"
        "bastion.example.com idc=bj ansible_user=ops\n"
        "\n"
        "[bj]\n"
        "web-bj-[01:03] ansible_user=deploy\n"
        "db-bj-1 ansible_host=10.1.0.5 ansible_port=2222   # primary\n"
        "\n"
        "[sh]\n"
        "web-sh-[a:b]\n"
        "db-sh-1 ansible_host=\"10.2.0.5\" ansible_user='postgres' note=\"two words\"\n"
        "\n"
        "[bj:vars]\n"
        "idc=bj\n"
        "ansible_ssh_common_args=-o StrictHostKeyChecking=no\n"
        "\n"
        "[sh:vars]\n"
        "idc = sh  ; comment\n"
        "\n"
        "[webservers]\n"
        "web-bj-[01:03]\n"
        "web-sh-[a:b]\n"
        "\n"
        "[dbservers]\n"
        "db-bj-1\n"
        "db-sh-1:2200\n"
        "\n"
        "[prod:children]\n"
        "webservers\n"
        "dbservers\n";

static void
test_realistic(void **state)
{
	struct parsed p;
	const struct om_host *h;
	char g[256];

	(void)state;
	parse(&p, realistic, NULL);
	if (p.rc != 0)
		fail_msg("parse: %s", p.err);
	assert_int_equal(p.n, 8);

	/* First-appearance order. */
	assert_string_equal(p.hosts[0].name, "bastion.example.com");
	assert_string_equal(p.hosts[1].name, "web-bj-01");
	assert_string_equal(p.hosts[3].name, "web-bj-03");
	assert_string_equal(p.hosts[4].name, "db-bj-1");
	assert_string_equal(p.hosts[5].name, "web-sh-a");
	assert_string_equal(p.hosts[6].name, "web-sh-b");

	h = find(&p, "bastion.example.com");
	assert_string_equal(h->idc, "bj");
	assert_string_equal(h->addr, "bastion.example.com");
	assert_string_equal(h->user, "ops");
	assert_int_equal(h->port, 0);
	/* "ungrouped" is never reported. */
	assert_int_equal(h->ngroups, 0);

	h = find(&p, "web-bj-02");
	assert_string_equal(h->idc, "bj");
	assert_string_equal(h->addr, "web-bj-02");
	assert_string_equal(h->user, "deploy");
	assert_string_equal(groups_of(h, g, sizeof(g)), "bj webservers prod");

	h = find(&p, "db-bj-1");
	assert_string_equal(h->addr, "10.1.0.5");
	assert_int_equal(h->port, 2222);
	assert_null(h->user);
	assert_string_equal(groups_of(h, g, sizeof(g)), "bj dbservers prod");

	h = find(&p, "web-sh-b");
	assert_string_equal(h->idc, "sh");
	assert_string_equal(groups_of(h, g, sizeof(g)), "sh webservers prod");

	h = find(&p, "db-sh-1");
	assert_string_equal(h->idc, "sh");
	assert_string_equal(h->addr, "10.2.0.5");
	assert_string_equal(h->user, "postgres");
	assert_int_equal(h->port, 2200);
	parsed_free(&p);
}

static void
test_ranges(void **state)
{
	struct parsed p;

	(void)state;
	parse(&p, "[g:vars]\nidc=x\n[g]\nweb[01:03]\nn[8:10]\ns[0:6:3]\nc-[a:c]-[1:2].lan\n", NULL);
	if (p.rc != 0)
		fail_msg("parse: %s", p.err);
	assert_int_equal(p.n, 15);
	assert_string_equal(p.hosts[0].name, "web01");
	assert_string_equal(p.hosts[2].name, "web03");
	assert_string_equal(p.hosts[3].name, "n8");
	assert_string_equal(p.hosts[5].name, "n10");
	assert_string_equal(p.hosts[6].name, "s0");
	assert_string_equal(p.hosts[7].name, "s3");
	assert_string_equal(p.hosts[8].name, "s6");
	assert_string_equal(p.hosts[9].name, "c-a-1.lan");
	assert_string_equal(p.hosts[10].name, "c-a-2.lan");
	assert_string_equal(p.hosts[14].name, "c-c-2.lan");
	parsed_free(&p);

	/* A range with a port after it. */
	parse(&p, "w[1:2]:2200 idc=x\n", NULL);
	assert_int_equal(p.rc, 0);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.hosts[1].name, "w2");
	assert_int_equal(p.hosts[1].port, 2200);
	parsed_free(&p);

	assert_fails("w[3:1]\n", "x", OM_EPROTO, "line 1: host range '[3:1]' goes backwards");
	assert_fails("w[1:3\n", "x", OM_EPROTO, "line 1: unterminated host range '[1:3'");
	assert_fails("w[1:3:22\n", "x", OM_EPROTO, "unterminated host range");
	assert_fails("w[1-3]\n", "x", OM_EPROTO, "line 1: bad host range '[1-3]'");
	assert_fails("w[a:3]\n", "x", OM_EPROTO, "bad host range");
	assert_fails("w[A:c]\n", "x", OM_EPROTO, "bad host range");
	assert_fails("w[01:100]\n", "x", OM_EPROTO, "pads the start");
	assert_fails("w[0:1:0]\n", "x", OM_EPROTO, "bad host range");
	assert_fails("w[0:1000000]\n", "x", OM_EMSGSIZE, "line 1: more than 100000 hosts");
}

/* A host listed in two groups is one host with both groups and merged variables. */
static void
test_merge(void **state)
{
	struct parsed p;
	const struct om_host *h;
	char g[256];

	(void)state;
	parse(&p,
	      "[a]\nh1 ansible_user=one\nh2\n[b]\nh1 "
	      "ansible_port=2022\n[a]\nh1\n[a:vars]\nidc=bj\n",
	      NULL);
	if (p.rc != 0)
		fail_msg("parse: %s", p.err);
	assert_int_equal(p.n, 2);
	h = find(&p, "h1");
	assert_string_equal(groups_of(h, g, sizeof(g)), "a b");
	assert_string_equal(h->user, "one");
	assert_int_equal(h->port, 2022);
	assert_string_equal(h->idc, "bj");
	parsed_free(&p);
}

static void
test_idc_inheritance(void **state)
{
	struct parsed p;
	const struct om_host *h;
	char g[256];

	(void)state;
	/* Through two levels of :children; the host's own idc wins. */
	parse(&p,
	      "[dc:children]\nracks\n[racks:children]\nrack1\n[rack1]\nr1\nr2 idc=other\n"
	      "[dc:vars]\nidc=bj\n",
	      NULL);
	if (p.rc != 0)
		fail_msg("parse: %s", p.err);
	h = find(&p, "r1");
	assert_string_equal(h->idc, "bj");
	assert_string_equal(groups_of(h, g, sizeof(g)), "rack1 racks dc");
	assert_string_equal(find(&p, "r2")->idc, "other");
	parsed_free(&p);

	/* The nearest group decides: rack1's own IDC beats dc's. */
	parse(&p, "[dc:children]\nrack1\n[rack1]\nr1\n[dc:vars]\nidc=bj\n[rack1:vars]\nidc=sh\n",
	      NULL);
	assert_int_equal(p.rc, 0);
	assert_string_equal(find(&p, "r1")->idc, "sh");
	parsed_free(&p);

	/* [all:vars] reaches everyone; a cycle in :children is harmless. */
	parse(&p, "u1\n[a:children]\nb\n[b:children]\na\n[b]\nh\n[all:vars]\nidc=zz\n", NULL);
	if (p.rc != 0)
		fail_msg("parse: %s", p.err);
	assert_string_equal(find(&p, "u1")->idc, "zz");
	h = find(&p, "h");
	assert_string_equal(h->idc, "zz");
	assert_string_equal(groups_of(h, g, sizeof(g)), "b a");
	parsed_free(&p);
}

static void
test_idc_conflict(void **state)
{
	(void)state;
	assert_fails("[bj]\nx\n[sh]\nx\n[bj:vars]\nidc=bj\n[sh:vars]\nidc=sh\n", NULL, OM_EPROTO,
	             "line 2: host 'x' gets IDC 'bj' from group 'bj' and 'sh' from 'sh'");
	/* The same IDC from two groups is no conflict. */
	{
		struct parsed p;

		parse(&p, "[a]\nx\n[b]\nx\n[a:vars]\nidc=bj\n[b:vars]\nidc=bj\n", NULL);
		assert_int_equal(p.rc, 0);
		assert_string_equal(p.hosts[0].idc, "bj");
		parsed_free(&p);
	}
}

static void
test_missing_idc(void **state)
{
	struct parsed p;

	(void)state;
	assert_fails("[bj:vars]\nidc=bj\n[bj]\na\n[other]\nb\n", NULL, OM_EPROTO,
	             "line 6: host 'b' has no IDC (set idc=... on it or its group)");

	parse(&p, "[bj:vars]\nidc=bj\n[bj]\na\n[other]\nb\n", "dflt");
	assert_int_equal(p.rc, 0);
	assert_string_equal(find(&p, "a")->idc, "bj");
	assert_string_equal(find(&p, "b")->idc, "dflt");
	parsed_free(&p);

	assert_fails("a\n", "-x", OM_EINVAL, "invalid default IDC name '-x'");
}

static void
test_bad_port(void **state)
{
	(void)state;
	assert_fails("[g]\nok idc=a\nweb ansible_port=70000\n", NULL, OM_EPROTO,
	             "line 3: bad ansible_port '70000' (1..65535)");
	assert_fails("web ansible_port=0 idc=a\n", NULL, OM_EPROTO, "line 1: bad ansible_port '0'");
	assert_fails("web ansible_port=-22 idc=a\n", NULL, OM_EPROTO, "bad ansible_port '-22'");
	assert_fails("web ansible_port=22x idc=a\n", NULL, OM_EPROTO, "bad ansible_port '22x'");
	assert_fails("web:99999 idc=a\n", NULL, OM_EPROTO, "line 1: bad port '99999'");
}

static void
test_nul_byte(void **state)
{
	static const char text[] = "a idc=x\n[g]\nb\0c idc=x\n";
	struct om_host *hosts = NULL;
	size_t n = 99;
	char err[128];

	(void)state;
	assert_int_equal(
	        om_inventory_parse_ini(text, sizeof(text) - 1, NULL, &hosts, &n, err, sizeof(err)),
	        OM_EPROTO);
	assert_string_equal(err, "line 3: NUL byte");
	assert_null(hosts);
	assert_int_equal(n, 0);
}

static void
test_invalid_names(void **state)
{
	(void)state;
	assert_fails("-oProxyCommand=x idc=a\n", NULL, OM_EPROTO,
	             "line 1: invalid host name '-oProxyCommand=x'");
	assert_fails("[g]\nweb1 idc=a\nweb$(id) idc=a\n", NULL, OM_EPROTO,
	             "line 3: invalid host name 'web$(id)'");
	assert_fails("h ansible_host=-oProxyCommand=x idc=a\n", NULL, OM_EPROTO,
	             "bad ansible_host '-oProxyCommand=x'");
	assert_fails("h ansible_user=-l idc=a\n", NULL, OM_EPROTO, "bad ansible_user '-l'");
	assert_fails("h idc=b/j\n", NULL, OM_EPROTO, "invalid IDC name 'b/j'");
	assert_fails("[-g]\n", NULL, OM_EPROTO, "line 1: invalid group name '-g'");
	assert_fails("[g:children]\nbad child\n", NULL, OM_EPROTO, "expected one group name");
	assert_fails("[g:vars]\nidc=../x\n", NULL, OM_EPROTO, "invalid IDC name '../x'");
	/* Control bytes are escaped in the message. */
	assert_fails("h\033]0;x\n", "a", OM_EPROTO, "invalid host name 'h\\x1b]0;x'");
}

static void
test_syntax_errors(void **state)
{
	(void)state;
	assert_fails("[g\n", NULL, OM_EPROTO, "line 1: section header without ']'");
	assert_fails("[g:hosts]\n", NULL, OM_EPROTO, "unknown section type ':hosts'");
	assert_fails("[g] x\n", NULL, OM_EPROTO, "unexpected text after section header");
	assert_fails("h idc=a junk\n", NULL, OM_EPROTO,
	             "expected key=value after the host, got 'junk'");
	assert_fails("h ansible_user=\"x\n", NULL, OM_EPROTO, "unterminated \" quote");
	assert_fails("h ansible_user='x'y\n", NULL, OM_EPROTO, "text right after a closing quote");
	assert_fails("[g:vars]\njust-a-word\n", NULL, OM_EPROTO, "line 2: expected key=value");
	assert_fails("[g:vars]\nidc=a b\n", NULL, OM_EPROTO, "unexpected text after idc value");
}

static void
test_empty_and_comments(void **state)
{
	struct parsed p;
	struct om_host *hosts = (struct om_host *)1;
	size_t n = 1;

	(void)state;
	parse(&p, "# nothing\n\n   ; here\n[g]\n[g:vars]\nidc=a\n", NULL);
	assert_int_equal(p.rc, 0);
	assert_int_equal(p.n, 0);
	parsed_free(&p);
	assert_int_equal(om_inventory_parse_ini(NULL, 0, NULL, &hosts, &n, NULL, 0), 0);
	assert_int_equal(n, 0);
	assert_int_equal(om_inventory_parse_ini(NULL, 5, NULL, &hosts, &n, NULL, 0), OM_EINVAL);

	/* CRLF line ends, a byte order mark and no final newline. */
	parse(&p, "\xef\xbb\xbf[g]\r\nh1 idc=a\r\nh2 idc=a", NULL);
	assert_int_equal(p.rc, 0);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.hosts[1].name, "h2");
	parsed_free(&p);
}

static void
test_long_line(void **state)
{
	size_t len = 70000;
	char *text = om_malloc(len + 1);
	struct om_host *hosts = NULL;
	size_t n = 0;
	char err[128];

	(void)state;
	assert_non_null(text);
	memcpy(text, "a idc=x\n", 8);
	memset(text + 8, 'b', len - 8);
	text[len] = '\0';
	assert_int_equal(om_inventory_parse_ini(text, len, NULL, &hosts, &n, err, sizeof(err)),
	                 OM_EMSGSIZE);
	assert_string_equal(err, "line 2: longer than 65536 bytes");
	om_free(text);
}

static void
test_too_many_groups_per_host(void **state)
{
	char text[4096];
	size_t o = 0;

	(void)state;
	for (int i = 0; i < OM_MAX_GROUPS + 1; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "[g%d]\nh idc=a\n", i);
	assert_fails(text, NULL, OM_EPROTO, "host 'h' is in more than 64 groups");
}

/* A :children chain deeper than 32 above a host is refused, not walked. */
static void
test_deep_nesting(void **state)
{
	char text[4096];
	size_t o = 0;

	(void)state;
	for (int i = 0; i < 40; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "[g%d:children]\ng%d\n", i + 1,
		                      i);
	snprintf(text + o, sizeof(text) - o, "[g0]\nh idc=a\n");
	assert_fails(text, NULL, OM_EPROTO, "line 82: groups of host 'h' nest more than 32 deep");
}

/* Every allocation failure is reported as OM_ENOMEM without a leak. */
static void
test_alloc_failures(void **state)
{
	struct om_host *hosts;
	size_t n;
	char err[256];
	int rc;

	(void)state;
	for (unsigned long nth = 1;; nth++) {
		om_alloc_fail_at(nth);
		rc = om_inventory_parse_ini(realistic, sizeof(realistic) - 1, NULL, &hosts, &n, err,
		                            sizeof(err));
		om_alloc_fail_at(0);
		if (rc == 0) {
			assert_int_equal(n, 8);
			om_hosts_free(hosts, n);
			break;
		}
		assert_int_equal(rc, OM_ENOMEM);
		assert_null(hosts);
		assert_true(nth < 1000);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_realistic),
	        cmocka_unit_test(test_ranges),
	        cmocka_unit_test(test_merge),
	        cmocka_unit_test(test_idc_inheritance),
	        cmocka_unit_test(test_idc_conflict),
	        cmocka_unit_test(test_missing_idc),
	        cmocka_unit_test(test_bad_port),
	        cmocka_unit_test(test_nul_byte),
	        cmocka_unit_test(test_invalid_names),
	        cmocka_unit_test(test_syntax_errors),
	        cmocka_unit_test(test_empty_and_comments),
	        cmocka_unit_test(test_long_line),
	        cmocka_unit_test(test_too_many_groups_per_host),
	        cmocka_unit_test(test_deep_nesting),
	        cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests_name("inventory", tests, NULL, NULL);
}
