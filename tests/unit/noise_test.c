/*
 * proto/noise.c against the cacophony vectors (every Noise_IK and Noise_NK
 * vector with 25519/ChaChaPoly/SHA256, handshake and transport messages byte
 * for byte), plus the failures the vectors cannot show: a wrong pinned key,
 * tampered messages, low-order keys, out-of-turn calls.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "om/base.h"
#include "om/noise.h"

#define VEC_NAME "cacophony-25519-chachapoly-sha256.json"

/* Hex from the vector file into a fresh buffer; caller frees. */
static uint8_t *
hex_field(json_t *v, const char *key, size_t *len)
{
	const char *s = json_string_value(json_object_get(v, key));
	uint8_t *out;

	assert_non_null(s);
	*len = strlen(s) / 2;
	out = om_malloc(*len + 1);
	assert_non_null(out);
	assert_int_equal(om_hex_decode(s, out, *len), 0);
	return out;
}

static void
hex_key(json_t *v, const char *key, uint8_t out[OM_NOISE_KEYLEN])
{
	const char *s = json_string_value(json_object_get(v, key));

	assert_non_null(s);
	assert_int_equal(om_hex_decode(s, out, OM_NOISE_KEYLEN), 0);
}

static json_t *
load_vectors(void)
{
	const char *paths[3];
	json_error_t jerr;
	json_t *root;
	size_t i;

	/* The env override first, then the shared copy, then the repo's own. */
	paths[0] = getenv("OM_NOISE_VECTORS");
	paths[1] = "../shared/testvectors/noise/" VEC_NAME;
	paths[2] = "tests/data/noise/" VEC_NAME;
	for (i = 0; i < 3; i++) {
		if (paths[i] == NULL || paths[i][0] == '\0')
			continue;
		if ((root = json_load_file(paths[i], 0, &jerr)) != NULL)
			return root;
	}
	fail_msg("cannot load %s (set OM_NOISE_VECTORS)", VEC_NAME);
	return NULL;
}

static void
run_vector(json_t *v, enum om_noise_pattern pat)
{
	struct om_keypair is, rsk;
	struct om_noise_hs *ini = NULL, *resp = NULL;
	uint8_t ie[OM_NOISE_KEYLEN], re[OM_NOISE_KEYLEN], irs[OM_NOISE_KEYLEN];
	uint8_t hh[OM_NOISE_HASHLEN], h1[OM_NOISE_HASHLEN], h2[OM_NOISE_HASHLEN];
	uint8_t itx[OM_NOISE_KEYLEN], irx[OM_NOISE_KEYLEN];
	uint8_t rtx[OM_NOISE_KEYLEN], rrx[OM_NOISE_KEYLEN];
	uint8_t *ipro, *rpro, *buf, *dec;
	uint64_t ctr_i2r = 0, ctr_r2i = 0;
	size_t iplen, rplen, hlen, i;
	json_t *msgs;

	ipro = hex_field(v, "init_prologue", &iplen);
	rpro = hex_field(v, "resp_prologue", &rplen);
	hex_key(v, "init_ephemeral", ie);
	hex_key(v, "resp_ephemeral", re);
	hex_key(v, "init_remote_static", irs);
	hex_key(v, "resp_static", rsk.priv);
	assert_int_equal(om_keypair_from_private(&rsk), 0);
	assert_memory_equal(rsk.pub, irs, OM_NOISE_KEYLEN);
	if (pat == OM_NOISE_IK) {
		hex_key(v, "init_static", is.priv);
		assert_int_equal(om_keypair_from_private(&is), 0);
	}
	hlen = 0;
	{
		uint8_t *tmp = hex_field(v, "handshake_hash", &hlen);
		assert_int_equal(hlen, OM_NOISE_HASHLEN);
		memcpy(hh, tmp, hlen);
		om_free(tmp);
	}

	assert_int_equal(
	        om_noise_hs_new(&ini, pat, true, ipro, iplen, pat == OM_NOISE_IK ? &is : NULL, irs),
	        0);
	assert_int_equal(om_noise_hs_new(&resp, pat, false, rpro, rplen, &rsk, NULL), 0);
	assert_int_equal(om_noise_hs_set_ephemeral(ini, ie), 0);
	assert_int_equal(om_noise_hs_set_ephemeral(resp, re), 0);

	msgs = json_object_get(v, "messages");
	assert_true(json_is_array(msgs));
	assert_true(json_array_size(msgs) >= 2);
	for (i = 0; i < json_array_size(msgs); i++) {
		json_t *m = json_array_get(msgs, i);
		uint8_t *pl, *ct;
		size_t pllen, ctlen, outlen = 0, declen = 0;
		bool from_init = i % 2 == 0;

		pl = hex_field(m, "payload", &pllen);
		ct = hex_field(m, "ciphertext", &ctlen);
		buf = om_malloc(ctlen + 64);
		dec = om_malloc(ctlen + 64);
		assert_non_null(buf);
		assert_non_null(dec);
		if (i < 2) {
			struct om_noise_hs *tx = from_init ? ini : resp;
			struct om_noise_hs *rx = from_init ? resp : ini;

			assert_int_equal(om_noise_hs_write(tx, pl, pllen, buf, ctlen + 64, &outlen),
			                 0);
			assert_int_equal(outlen, ctlen);
			assert_memory_equal(buf, ct, ctlen);
			assert_int_equal(om_noise_hs_read(rx, ct, ctlen, dec, ctlen + 64, &declen),
			                 0);
			assert_int_equal(declen, pllen);
			if (pllen)
				assert_memory_equal(dec, pl, pllen);
			if (i == 1) {
				assert_true(om_noise_hs_done(ini));
				assert_true(om_noise_hs_done(resp));
				om_noise_hs_hash(ini, h1);
				om_noise_hs_hash(resp, h2);
				assert_memory_equal(h1, hh, OM_NOISE_HASHLEN);
				assert_memory_equal(h2, hh, OM_NOISE_HASHLEN);
				assert_int_equal(om_noise_hs_split(ini, itx, irx), 0);
				assert_int_equal(om_noise_hs_split(resp, rtx, rrx), 0);
				assert_memory_equal(itx, rrx, OM_NOISE_KEYLEN);
				assert_memory_equal(irx, rtx, OM_NOISE_KEYLEN);
				assert_memory_not_equal(itx, irx, OM_NOISE_KEYLEN);
				if (pat == OM_NOISE_IK) {
					assert_non_null(om_noise_hs_remote_static(resp));
					assert_memory_equal(om_noise_hs_remote_static(resp), is.pub,
					                    OM_NOISE_KEYLEN);
				} else {
					assert_null(om_noise_hs_remote_static(resp));
				}
			}
		} else {
			/* Transport: each direction has its own key and counter. */
			const uint8_t *k_tx = from_init ? itx : rtx;
			const uint8_t *k_rx = from_init ? rrx : irx;
			uint64_t *ctr = from_init ? &ctr_i2r : &ctr_r2i;

			assert_int_equal(ctlen, pllen + OM_NOISE_TAGLEN);
			assert_int_equal(om_aead_encrypt(k_tx, *ctr, NULL, 0, pl, pllen, buf), 0);
			assert_memory_equal(buf, ct, ctlen);
			assert_int_equal(om_aead_decrypt(k_rx, *ctr, NULL, 0, ct, ctlen, dec), 0);
			if (pllen)
				assert_memory_equal(dec, pl, pllen);
			(*ctr)++;
		}
		om_free(pl);
		om_free(ct);
		om_free(buf);
		om_free(dec);
	}
	om_noise_hs_free(ini);
	om_noise_hs_free(resp);
	om_free(ipro);
	om_free(rpro);
}

static void
test_vectors(void **state)
{
	json_t *root = load_vectors(), *vecs, *v;
	size_t i;
	int n_ik = 0, n_nk = 0;

	(void)state;
	vecs = json_object_get(root, "vectors");
	assert_true(json_is_array(vecs));
	json_array_foreach(vecs, i, v)
	{
		const char *name = json_string_value(json_object_get(v, "protocol_name"));

		if (name == NULL)
			continue;
		if (strcmp(name, "Noise_IK_25519_ChaChaPoly_SHA256") == 0) {
			run_vector(v, OM_NOISE_IK);
			n_ik++;
		} else if (strcmp(name, "Noise_NK_25519_ChaChaPoly_SHA256") == 0) {
			run_vector(v, OM_NOISE_NK);
			n_nk++;
		}
	}
	json_decref(root);
	print_message("noise vectors checked: IK %d, NK %d\n", n_ik, n_nk);
	/* Guard against a vacuous pass (a renamed field or an empty file). */
	assert_true(n_ik >= 1);
	assert_true(n_nk >= 1);
}

/* --- handshakes with fixed keys, for the failure cases -------------------------- */

struct fixture {
	struct om_keypair master, worker, other;
	uint8_t ie[OM_NOISE_KEYLEN], re[OM_NOISE_KEYLEN];
};

static void
fixture_init(struct fixture *f)
{
	assert_int_equal(om_keypair_generate(&f->master), 0);
	assert_int_equal(om_keypair_generate(&f->worker), 0);
	assert_int_equal(om_keypair_generate(&f->other), 0);
	memset(f->ie, 0x11, sizeof(f->ie));
	memset(f->re, 0x22, sizeof(f->re));
}

static const uint8_t prologue[] = "test prologue";
static const uint8_t pay1[] = "hello from the initiator";
static const uint8_t pay2[] = "hello from the responder";

static struct om_noise_hs *
new_ini(const struct fixture *f, enum om_noise_pattern pat, const uint8_t *rs)
{
	struct om_noise_hs *hs;

	assert_int_equal(om_noise_hs_new(&hs, pat, true, prologue, sizeof(prologue),
	                                 pat == OM_NOISE_IK ? &f->worker : NULL, rs),
	                 0);
	assert_int_equal(om_noise_hs_set_ephemeral(hs, f->ie), 0);
	return hs;
}

static struct om_noise_hs *
new_resp(const struct fixture *f, enum om_noise_pattern pat)
{
	struct om_noise_hs *hs;

	assert_int_equal(
	        om_noise_hs_new(&hs, pat, false, prologue, sizeof(prologue), &f->master, NULL), 0);
	assert_int_equal(om_noise_hs_set_ephemeral(hs, f->re), 0);
	return hs;
}

static void
wrong_master(enum om_noise_pattern pat)
{
	struct fixture f;
	struct om_noise_hs *ini, *resp;
	uint8_t m1[256], pl[256];
	size_t m1len, plen;

	fixture_init(&f);
	/* The initiator pinned someone else's key: es differs, so message 1 fails. */
	ini = new_ini(&f, pat, f.other.pub);
	resp = new_resp(&f, pat);
	assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), m1, sizeof(m1), &m1len), 0);
	assert_int_equal(om_noise_hs_read(resp, m1, m1len, pl, sizeof(pl), &plen), OM_ECRYPTO);
	assert_int_equal(plen, 0);
	assert_false(om_noise_hs_done(resp));
	assert_null(om_noise_hs_remote_static(resp));
	/* Unusable after the failure. */
	assert_int_equal(om_noise_hs_read(resp, m1, m1len, pl, sizeof(pl), &plen), OM_EINVAL);
	om_noise_hs_free(ini);
	om_noise_hs_free(resp);
}

static void
test_wrong_master_ik(void **state)
{
	(void)state;
	wrong_master(OM_NOISE_IK);
}

static void
test_wrong_master_nk(void **state)
{
	(void)state;
	wrong_master(OM_NOISE_NK);
}

static void
tamper(enum om_noise_pattern pat)
{
	struct fixture f;
	struct om_noise_hs *ini, *resp;
	uint8_t m1[256], m2[256], bad[256], pl[256], ref1[256], ref2[256];
	size_t m1len, m2len, plen, ref1len, ref2len, i;
	int bit;

	fixture_init(&f);
	/* A clean run: fixed ephemerals make both messages reproducible. */
	ini = new_ini(&f, pat, f.master.pub);
	resp = new_resp(&f, pat);
	assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), ref1, sizeof(ref1), &ref1len),
	                 0);
	assert_int_equal(om_noise_hs_read(resp, ref1, ref1len, pl, sizeof(pl), &plen), 0);
	assert_int_equal(om_noise_hs_write(resp, pay2, sizeof(pay2), ref2, sizeof(ref2), &ref2len),
	                 0);
	assert_int_equal(om_noise_hs_read(ini, ref2, ref2len, pl, sizeof(pl), &plen), 0);
	assert_int_equal(plen, sizeof(pay2));
	om_noise_hs_free(ini);
	om_noise_hs_free(resp);

	/* Every bit of message 1. */
	for (i = 0; i < ref1len; i++) {
		for (bit = 0; bit < 8; bit++) {
			memcpy(bad, ref1, ref1len);
			bad[i] ^= (uint8_t)(1u << bit);
			resp = new_resp(&f, pat);
			plen = 99;
			assert_int_equal(
			        om_noise_hs_read(resp, bad, ref1len, pl, sizeof(pl), &plen),
			        OM_ECRYPTO);
			assert_int_equal(plen, 0);
			om_noise_hs_free(resp);
		}
	}
	/* Every bit of message 2. */
	for (i = 0; i < ref2len; i++) {
		for (bit = 0; bit < 8; bit++) {
			ini = new_ini(&f, pat, f.master.pub);
			resp = new_resp(&f, pat);
			assert_int_equal(
			        om_noise_hs_write(ini, pay1, sizeof(pay1), m1, sizeof(m1), &m1len),
			        0);
			assert_int_equal(om_noise_hs_read(resp, m1, m1len, pl, sizeof(pl), &plen),
			                 0);
			assert_int_equal(
			        om_noise_hs_write(resp, pay2, sizeof(pay2), m2, sizeof(m2), &m2len),
			        0);
			assert_int_equal(m2len, ref2len);
			assert_memory_equal(m2, ref2, m2len);
			m2[i] ^= (uint8_t)(1u << bit);
			assert_int_equal(om_noise_hs_read(ini, m2, m2len, pl, sizeof(pl), &plen),
			                 OM_ECRYPTO);
			assert_false(om_noise_hs_done(ini));
			assert_int_equal(om_noise_hs_split(ini, bad, bad + 32), OM_EINVAL);
			om_noise_hs_free(ini);
			om_noise_hs_free(resp);
		}
	}
}

static void
test_tamper_ik(void **state)
{
	(void)state;
	tamper(OM_NOISE_IK);
}

static void
test_tamper_nk(void **state)
{
	(void)state;
	tamper(OM_NOISE_NK);
}

/* A low-order (all-zero) ephemeral must not give an all-zero, public DH. */
static void
test_zero_ephemeral(void **state)
{
	struct fixture f;
	struct om_noise_hs *ini, *resp;
	uint8_t m1[256], pl[256];
	size_t m1len, plen;
	enum om_noise_pattern pats[2] = {OM_NOISE_IK, OM_NOISE_NK};
	int i;

	(void)state;
	fixture_init(&f);
	for (i = 0; i < 2; i++) {
		ini = new_ini(&f, pats[i], f.master.pub);
		resp = new_resp(&f, pats[i]);
		assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), m1, sizeof(m1), &m1len),
		                 0);
		memset(m1, 0, OM_NOISE_KEYLEN);
		assert_int_equal(om_noise_hs_read(resp, m1, m1len, pl, sizeof(pl), &plen),
		                 OM_ECRYPTO);
		om_noise_hs_free(ini);
		om_noise_hs_free(resp);
	}
	/* A pinned all-zero master key fails when writing message 1. */
	{
		static const uint8_t zero[OM_NOISE_KEYLEN];

		ini = new_ini(&f, OM_NOISE_NK, zero);
		assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), m1, sizeof(m1), &m1len),
		                 OM_ECRYPTO);
		assert_int_equal(m1len, 0);
		assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), m1, sizeof(m1), &m1len),
		                 OM_EINVAL);
		om_noise_hs_free(ini);
	}
}

static void
test_turns_and_sizes(void **state)
{
	struct fixture f;
	struct om_noise_hs *ini, *resp;
	uint8_t m1[256], m2[256], pl[256], tx[32], rx[32];
	size_t m1len, m2len, plen, i;

	(void)state;
	fixture_init(&f);
	ini = new_ini(&f, OM_NOISE_IK, f.master.pub);
	resp = new_resp(&f, OM_NOISE_IK);
	/* Out of turn. */
	assert_int_equal(om_noise_hs_read(ini, m1, 100, pl, sizeof(pl), &plen), OM_EINVAL);
	assert_int_equal(om_noise_hs_write(resp, pay2, sizeof(pay2), m2, sizeof(m2), &m2len),
	                 OM_EINVAL);
	assert_int_equal(om_noise_hs_split(ini, tx, rx), OM_EINVAL);
	/* A too-small buffer is refused without spoiling the handshake. */
	assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), m1, 50, &m1len), OM_EMSGSIZE);
	assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), m1, sizeof(m1), &m1len), 0);
	assert_int_equal(m1len, 32 + 48 + sizeof(pay1) + 16);
	/* The ephemeral is fixed once sent. */
	assert_int_equal(om_noise_hs_set_ephemeral(ini, f.re), OM_EINVAL);
	assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), m2, sizeof(m2), &m2len),
	                 OM_EINVAL);
	assert_int_equal(m2len, 0);
	/* Every short length of message 1 is malformed. */
	for (i = 0; i < 96; i++) {
		struct om_noise_hs *r = new_resp(&f, OM_NOISE_IK);

		assert_int_equal(om_noise_hs_read(r, m1, i, pl, sizeof(pl), &plen), OM_EPROTO);
		om_noise_hs_free(r);
	}
	/* A short payload buffer. */
	{
		struct om_noise_hs *r = new_resp(&f, OM_NOISE_IK);

		assert_int_equal(om_noise_hs_read(r, m1, m1len, pl, sizeof(pay1) - 1, &plen),
		                 OM_EMSGSIZE);
		om_noise_hs_free(r);
	}
	assert_int_equal(om_noise_hs_read(resp, m1, m1len, pl, sizeof(pay1), &plen), 0);
	assert_int_equal(plen, sizeof(pay1));
	assert_memory_equal(pl, pay1, plen);
	/* Empty payload in message 2. */
	assert_int_equal(om_noise_hs_write(resp, NULL, 0, m2, sizeof(m2), &m2len), 0);
	assert_int_equal(m2len, 32 + 16);
	assert_int_equal(om_noise_hs_read(ini, m2, m2len, NULL, 0, &plen), 0);
	assert_int_equal(plen, 0);
	assert_true(om_noise_hs_done(ini));
	assert_int_equal(om_noise_hs_write(ini, pay1, sizeof(pay1), m1, sizeof(m1), &m1len),
	                 OM_EINVAL);
	om_noise_hs_free(ini);
	om_noise_hs_free(resp);

	/* Bad arguments. */
	assert_int_equal(om_noise_hs_new(&ini, OM_NOISE_IK, true, NULL, 0, NULL, f.master.pub),
	                 OM_EINVAL);
	assert_null(ini);
	assert_int_equal(om_noise_hs_new(&ini, OM_NOISE_NK, true, NULL, 0, NULL, NULL), OM_EINVAL);
	assert_int_equal(om_noise_hs_new(&ini, OM_NOISE_NK, false, NULL, 0, NULL, NULL), OM_EINVAL);
	assert_int_equal(om_noise_hs_new(&ini, (enum om_noise_pattern)3, true, NULL, 0, &f.worker,
	                                 f.master.pub),
	                 OM_EINVAL);
	om_noise_hs_free(NULL);
}

static void
test_aead(void **state)
{
	uint8_t key[32], ct[64 + 16], pt[64], msg[64];
	static const uint8_t ad[] = "header";

	(void)state;
	memset(key, 7, sizeof(key));
	memset(msg, 'a', sizeof(msg));
	assert_int_equal(om_aead_encrypt(key, 5, ad, sizeof(ad), msg, sizeof(msg), ct), 0);
	assert_int_equal(om_aead_decrypt(key, 5, ad, sizeof(ad), ct, sizeof(ct), pt), 0);
	assert_memory_equal(pt, msg, sizeof(msg));
	/* Another nonce, another AD, a flipped bit, a short input: all refused, no plaintext. */
	memset(pt, 0x55, sizeof(pt));
	assert_int_equal(om_aead_decrypt(key, 6, ad, sizeof(ad), ct, sizeof(ct), pt), OM_ECRYPTO);
	assert_int_equal(om_aead_decrypt(key, 5, ad, sizeof(ad) - 1, ct, sizeof(ct), pt),
	                 OM_ECRYPTO);
	ct[3] ^= 1;
	assert_int_equal(om_aead_decrypt(key, 5, ad, sizeof(ad), ct, sizeof(ct), pt), OM_ECRYPTO);
	{
		static const uint8_t zero[64];

		assert_memory_equal(pt, zero, sizeof(pt));
	}
	assert_int_equal(om_aead_decrypt(key, 5, NULL, 0, ct, 15, pt), OM_ECRYPTO);
	/* Empty plaintext: the frame is just the tag. */
	assert_int_equal(om_aead_encrypt(key, 0, NULL, 0, NULL, 0, ct), 0);
	assert_int_equal(om_aead_decrypt(key, 0, NULL, 0, ct, 16, NULL), 0);
	assert_int_equal(om_aead_decrypt(key, 1, NULL, 0, ct, 16, NULL), OM_ECRYPTO);
	/* In place. */
	memcpy(ct, msg, sizeof(msg));
	assert_int_equal(om_aead_encrypt(key, 9, NULL, 0, ct, sizeof(msg), ct), 0);
	assert_int_equal(om_aead_decrypt(key, 9, NULL, 0, ct, sizeof(ct), ct), 0);
	assert_memory_equal(ct, msg, sizeof(msg));

	assert_int_equal(om_ct_memcmp("abc", "abc", 3), 0);
	assert_int_not_equal(om_ct_memcmp("abc", "abd", 3), 0);
}

static void
test_keypair(void **state)
{
	struct om_keypair a, b;

	(void)state;
	assert_int_equal(om_keypair_generate(&a), 0);
	assert_int_equal(om_keypair_generate(&b), 0);
	assert_memory_not_equal(a.priv, b.priv, 32);
	memcpy(b.priv, a.priv, 32);
	memset(b.pub, 0, 32);
	assert_int_equal(om_keypair_from_private(&b), 0);
	assert_memory_equal(a.pub, b.pub, 32);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_vectors),         cmocka_unit_test(test_wrong_master_ik),
	        cmocka_unit_test(test_wrong_master_nk), cmocka_unit_test(test_tamper_ik),
	        cmocka_unit_test(test_tamper_nk),       cmocka_unit_test(test_zero_ephemeral),
	        cmocka_unit_test(test_turns_and_sizes), cmocka_unit_test(test_aead),
	        cmocka_unit_test(test_keypair),
	};

	return cmocka_run_group_tests_name("noise", tests, NULL, NULL);
}
