/*
 * worker/sshkey.c: the login key held in memory.  Keys come from the real
 * ssh-keygen; a signature must verify under the public key of the .pub
 * file; every key the module does not hold is OM_ETYPE (libssh2 reads it),
 * a damaged one OM_EPROTO.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "om/base.h"
#include "sshkey.h"

static char dir[] = "/tmp/om-sshkey-test.XXXXXX";

static int
keygen(const char *name, const char *args)
{
	char cmd[512];

	snprintf(cmd, sizeof cmd, "ssh-keygen -q -C test %s -f %s/%s </dev/null >/dev/null 2>&1",
	         args, dir, name);
	return system(cmd);
}

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	if (keygen("ed", "-t ed25519 -N ''") != 0 || keygen("enc", "-t ed25519 -N secret") != 0 ||
	    keygen("ec", "-t ecdsa -b 256 -N ''") != 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char cmd[256];

	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *
path(const char *name)
{
	static char p[256];

	snprintf(p, sizeof p, "%s/%s", dir, name);
	return p;
}

/* The blob of NAME.pub: its second field, base64-decoded. */
static size_t
pub_blob(const char *name, unsigned char *out, size_t cap)
{
	char line[1024], *b64, *end;
	FILE *f;
	int n;

	snprintf(line, sizeof line, "%s/%s.pub", dir, name);
	assert_non_null(f = fopen(line, "r"));
	assert_non_null(fgets(line, sizeof line, f));
	fclose(f);
	assert_non_null(b64 = strchr(line, ' '));
	b64++;
	assert_non_null(end = strchr(b64, ' '));
	*end = '\0';
	assert_true(strlen(b64) / 4 * 3 <= cap);
	n = EVP_DecodeBlock(out, (unsigned char *)b64, (int)strlen(b64));
	assert_true(n > 0);
	/* EVP_DecodeBlock counts the padding as bytes */
	return (size_t)n - (b64[strlen(b64) - 1] == '=') - (b64[strlen(b64) - 2] == '=');
}

static void
test_ed25519_signs(void **state)
{
	static const unsigned char data[] = "session id and userauth request";
	unsigned char want[256], *sig = NULL;
	const unsigned char *blob;
	struct om_sshkey *k;
	size_t blen, wlen, slen = 0;
	void *abs;
	EVP_PKEY *pub;
	EVP_MD_CTX *ctx;

	(void)state;
	assert_int_equal(om_sshkey_load(path("ed"), &k), 0);
	blob = om_sshkey_blob(k, &blen);
	wlen = pub_blob("ed", want, sizeof want);
	assert_int_equal(blen, wlen);
	assert_memory_equal(blob, want, blen);

	abs = k;
	assert_int_equal(om_sshkey_sign(NULL, &sig, &slen, data, sizeof data, &abs), 0);
	assert_int_equal(slen, 64);
	/* the last 32 bytes of the blob are the public key */
	assert_non_null(pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
	                                                  blob + blen - 32, 32));
	assert_non_null(ctx = EVP_MD_CTX_new());
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub), 1);
	assert_int_equal(EVP_DigestVerify(ctx, sig, slen, data, sizeof data), 1);
	/* and not over other data */
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub), 1);
	assert_int_not_equal(EVP_DigestVerify(ctx, sig, slen, data, sizeof data - 2), 1);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pub);
	free(sig); /* malloc'd, as libssh2 frees it */
	om_sshkey_free(k);
}

static void
test_other_keys_are_libssh2s(void **state)
{
	struct om_sshkey *k = (void *)1;

	(void)state;
	assert_int_equal(om_sshkey_load(path("enc"), &k), OM_ETYPE);
	assert_null(k);
	assert_int_equal(om_sshkey_load(path("ec"), &k), OM_ETYPE);
	assert_int_equal(om_sshkey_load(path("ed.pub"), &k), OM_ETYPE);
	assert_int_equal(om_sshkey_load(path("missing"), &k), OM_ENOTFOUND);
}

/* Truncated, or a byte of the secret changed: refused, never a wrong key. */
static void
test_damaged(void **state)
{
	char text[4096], *body;
	struct om_sshkey *k;
	size_t n;
	FILE *f;

	(void)state;
	assert_non_null(f = fopen(path("ed"), "r"));
	n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';

	/* the first 120 characters of the body, then the armour's end */
	assert_non_null(body = strchr(text, '\n'));
	assert_non_null(f = fopen(path("cut"), "w"));
	fprintf(f, "%.*s\n-----END OPENSSH PRIVATE KEY-----\n", (int)(body - text + 120), text);
	fclose(f);
	assert_int_equal(om_sshkey_load(path("cut"), &k), OM_EPROTO);

	/* a character near the end of the body: the padding or the secret's copy of the key */
	assert_non_null(body = strstr(text, "-----END"));
	body -= 12;
	*body = *body == 'A' ? 'B' : 'A';
	assert_non_null(f = fopen(path("flip"), "w"));
	fputs(text, f);
	fclose(f);
	k = NULL;
	if (om_sshkey_load(path("flip"), &k) == 0) {
		/* The flip hit the padding or the comment: the key is intact. */
		size_t blen;
		unsigned char want[256];
		const unsigned char *blob = om_sshkey_blob(k, &blen);

		assert_int_equal(pub_blob("ed", want, sizeof want), blen);
		assert_memory_equal(blob, want, blen);
		om_sshkey_free(k);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ed25519_signs),
	        cmocka_unit_test(test_other_keys_are_libssh2s),
	        cmocka_unit_test(test_damaged),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
