/*
 * Noise_IK and Noise_NK with 25519/ChaChaPoly/SHA256 (Noise spec rev 34) on
 * OpenSSL 3 EVP.  The two patterns are tables of tokens run by one small
 * interpreter, so the code follows the spec's HandshakeState pseudo-code
 * step by step; the cacophony vectors check it byte for byte.
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "om/base.h"
#include "om/noise.h"

#define DHLEN 32

enum token { TOK_END = 0, TOK_E, TOK_S, TOK_EE, TOK_ES, TOK_SE, TOK_SS };

/* Two messages for both patterns; message 0 goes initiator -> responder. */
#define MAX_TOKENS 5
static const enum token ik_msgs[2][MAX_TOKENS] = {
        {TOK_E, TOK_ES, TOK_S, TOK_SS, TOK_END},
        {TOK_E, TOK_EE, TOK_SE, TOK_END},
};
static const enum token nk_msgs[2][MAX_TOKENS] = {
        {TOK_E, TOK_ES, TOK_END},
        {TOK_E, TOK_EE, TOK_END},
};

struct om_noise_hs {
	enum om_noise_pattern pattern;
	bool initiator;
	int step;    /* messages already written or read: 0, 1, 2 (done) */
	bool failed; /* a read or a crypto step failed: refuse everything */
	/* SymmetricState */
	uint8_t ck[OM_NOISE_HASHLEN];
	uint8_t h[OM_NOISE_HASHLEN];
	/* CipherState */
	uint8_t k[OM_NOISE_KEYLEN];
	bool has_k;
	uint64_t n;
	/* keys */
	struct om_keypair s;
	bool has_s;
	struct om_keypair e;
	bool has_e; /* set by om_noise_hs_set_ephemeral or on writing "e" */
	uint8_t rs[DHLEN];
	bool has_rs;
	uint8_t re[DHLEN];
	bool has_re;
};

void
om_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

int
om_ct_memcmp(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0 ? 0 : 1;
}

/* --- primitives --------------------------------------------------------------- */

int
om_keypair_from_private(struct om_keypair *kp)
{
	EVP_PKEY *pk;
	size_t len = OM_NOISE_KEYLEN;
	int rv = OM_ECRYPTO;

	pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, kp->priv, OM_NOISE_KEYLEN);
	if (pk == NULL)
		return OM_ECRYPTO;
	if (EVP_PKEY_get_raw_public_key(pk, kp->pub, &len) == 1 && len == OM_NOISE_KEYLEN)
		rv = 0;
	EVP_PKEY_free(pk);
	return rv;
}

int
om_keypair_generate(struct om_keypair *kp)
{
	int rv;

	/* X25519 clamps the scalar itself, so any 32 random bytes are a key. */
	if (RAND_priv_bytes(kp->priv, OM_NOISE_KEYLEN) != 1)
		return OM_ECRYPTO;
	if ((rv = om_keypair_from_private(kp)) != 0)
		om_wipe(kp, sizeof(*kp));
	return rv;
}

/*
 * DH(priv, pub).  OpenSSL already fails on an all-zero result (a low-order
 * peer point); the explicit check keeps that guarantee independent of the
 * library version, since an all-zero secret would make the key public.
 */
static int
dh(const uint8_t priv[DHLEN], const uint8_t pub[DHLEN], uint8_t out[DHLEN])
{
	static const uint8_t zero[DHLEN];
	EVP_PKEY *mine = NULL, *peer = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	size_t len = DHLEN;
	int rv = OM_ECRYPTO;

	mine = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, DHLEN);
	peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pub, DHLEN);
	if (mine == NULL || peer == NULL)
		goto out;
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, mine, NULL)) == NULL)
		goto out;
	if (EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
	    EVP_PKEY_derive(ctx, out, &len) != 1 || len != DHLEN)
		goto out;
	if (CRYPTO_memcmp(out, zero, DHLEN) == 0)
		goto out;
	rv = 0;
out:
	if (rv != 0)
		om_wipe(out, DHLEN);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(mine);
	EVP_PKEY_free(peer);
	return rv;
}

static int
sha256_2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
         uint8_t out[OM_NOISE_HASHLEN])
{
	EVP_MD_CTX *md;
	unsigned int len = 0;
	int ok;

	if ((md = EVP_MD_CTX_new()) == NULL)
		return OM_ENOMEM;
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	     (alen == 0 || EVP_DigestUpdate(md, a, alen) == 1) &&
	     (blen == 0 || EVP_DigestUpdate(md, b, blen) == 1) &&
	     EVP_DigestFinal_ex(md, out, &len) == 1 && len == OM_NOISE_HASHLEN;
	EVP_MD_CTX_free(md);
	return ok ? 0 : OM_ECRYPTO;
}

static int
hmac(const uint8_t key[OM_NOISE_HASHLEN], const uint8_t *data, size_t len,
     uint8_t out[OM_NOISE_HASHLEN])
{
	unsigned int olen = 0;
	static const uint8_t empty[1];

	/* HMAC() treats a NULL data pointer as "no input" only on some paths. */
	if (HMAC(EVP_sha256(), key, OM_NOISE_HASHLEN, len ? data : empty, len, out, &olen) ==
	            NULL ||
	    olen != OM_NOISE_HASHLEN)
		return OM_ECRYPTO;
	return 0;
}

/*
 * Noise's HKDF (spec 4.3) with two outputs: plain HMAC chaining, not RFC
 * 5869's info-based expand, which is why OpenSSL's HKDF is not used.
 */
static int
hkdf2(const uint8_t ck[OM_NOISE_HASHLEN], const uint8_t *ikm, size_t ikmlen,
      uint8_t out1[OM_NOISE_HASHLEN], uint8_t out2[OM_NOISE_HASHLEN])
{
	uint8_t temp[OM_NOISE_HASHLEN], in[OM_NOISE_HASHLEN + 1];
	int rv;

	if ((rv = hmac(ck, ikm, ikmlen, temp)) != 0)
		goto out;
	in[0] = 0x01;
	if ((rv = hmac(temp, in, 1, out1)) != 0)
		goto out;
	memcpy(in, out1, OM_NOISE_HASHLEN);
	in[OM_NOISE_HASHLEN] = 0x02;
	rv = hmac(temp, in, sizeof(in), out2);
out:
	om_wipe(temp, sizeof(temp));
	om_wipe(in, sizeof(in));
	return rv;
}

static void
put_nonce(uint8_t nonce[12], uint64_t n)
{
	int i;

	memset(nonce, 0, 4);
	for (i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

int
om_aead_encrypt(const uint8_t key[OM_NOISE_KEYLEN], uint64_t nonce, const uint8_t *ad, size_t adlen,
                const uint8_t *in, size_t n, uint8_t *out)
{
	EVP_CIPHER_CTX *c;
	uint8_t iv[12];
	int l, ok;

	if (n > INT_MAX - OM_NOISE_TAGLEN || adlen > INT_MAX)
		return OM_EMSGSIZE;
	if ((c = EVP_CIPHER_CTX_new()) == NULL)
		return OM_ENOMEM;
	put_nonce(iv, nonce);
	/* A zero-length update with out == NULL would count as AD: skip empty parts. */
	ok = EVP_EncryptInit_ex2(c, EVP_chacha20_poly1305(), key, iv, NULL) == 1 &&
	     (adlen == 0 || EVP_EncryptUpdate(c, NULL, &l, ad, (int)adlen) == 1) &&
	     (n == 0 || (EVP_EncryptUpdate(c, out, &l, in, (int)n) == 1 && (size_t)l == n)) &&
	     EVP_EncryptFinal_ex(c, out + n, &l) == 1 && l == 0 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, OM_NOISE_TAGLEN, out + n) == 1;
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		om_wipe(out, n + OM_NOISE_TAGLEN);
		return OM_ECRYPTO;
	}
	return 0;
}

int
om_aead_decrypt(const uint8_t key[OM_NOISE_KEYLEN], uint64_t nonce, const uint8_t *ad, size_t adlen,
                const uint8_t *in, size_t n, uint8_t *out)
{
	EVP_CIPHER_CTX *c;
	uint8_t iv[12], tag[OM_NOISE_TAGLEN], fin[OM_NOISE_TAGLEN];
	size_t m;
	int l, ok;

	if (n < OM_NOISE_TAGLEN)
		return OM_ECRYPTO; /* cannot even hold a tag: not authentic */
	if (n > INT_MAX || adlen > INT_MAX)
		return OM_EMSGSIZE;
	m = n - OM_NOISE_TAGLEN;
	/* Copy the tag first: out may overlap in when decrypting in place. */
	memcpy(tag, in + m, OM_NOISE_TAGLEN);
	if ((c = EVP_CIPHER_CTX_new()) == NULL)
		return OM_ENOMEM;
	put_nonce(iv, nonce);
	ok = EVP_DecryptInit_ex2(c, EVP_chacha20_poly1305(), key, iv, NULL) == 1 &&
	     (adlen == 0 || EVP_DecryptUpdate(c, NULL, &l, ad, (int)adlen) == 1) &&
	     (m == 0 || (EVP_DecryptUpdate(c, out, &l, in, (int)m) == 1 && (size_t)l == m)) &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, OM_NOISE_TAGLEN, tag) == 1 &&
	     EVP_DecryptFinal_ex(c, fin, &l) > 0 && l == 0; /* a stream cipher: no output */
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		/* Forged: the caller must never see unauthenticated plaintext. */
		om_wipe(out, m);
		return OM_ECRYPTO;
	}
	return 0;
}

/* --- SymmetricState ------------------------------------------------------------ */

static int
mix_hash(struct om_noise_hs *hs, const uint8_t *data, size_t len)
{
	return sha256_2(hs->h, OM_NOISE_HASHLEN, data, len, hs->h);
}

static int
mix_key(struct om_noise_hs *hs, const uint8_t *ikm, size_t len)
{
	uint8_t ck[OM_NOISE_HASHLEN], k[OM_NOISE_HASHLEN];
	int rv;

	if ((rv = hkdf2(hs->ck, ikm, len, ck, k)) == 0) {
		memcpy(hs->ck, ck, sizeof(ck));
		/* HASHLEN == 32: temp_k needs no truncation. */
		memcpy(hs->k, k, OM_NOISE_KEYLEN);
		hs->has_k = true;
		hs->n = 0;
	}
	om_wipe(ck, sizeof(ck));
	om_wipe(k, sizeof(k));
	return rv;
}

/* out receives len (+16 once a key exists) bytes. */
static int
encrypt_and_hash(struct om_noise_hs *hs, const uint8_t *pt, size_t len, uint8_t *out,
                 size_t *outlen)
{
	int rv;

	if (!hs->has_k) {
		if (len)
			memcpy(out, pt, len);
		*outlen = len;
	} else {
		if (hs->n == UINT64_MAX)
			return OM_ECRYPTO; /* nonce 2^64-1 is reserved by the spec */
		if ((rv = om_aead_encrypt(hs->k, hs->n, hs->h, OM_NOISE_HASHLEN, pt, len, out)) !=
		    0)
			return rv;
		hs->n++;
		*outlen = len + OM_NOISE_TAGLEN;
	}
	return mix_hash(hs, out, *outlen);
}

/* ct is len bytes; out receives len (-16 once a key exists) bytes. */
static int
decrypt_and_hash(struct om_noise_hs *hs, const uint8_t *ct, size_t len, uint8_t *out)
{
	int rv;

	if (!hs->has_k) {
		if (len)
			memcpy(out, ct, len);
	} else {
		if (hs->n == UINT64_MAX)
			return OM_ECRYPTO;
		if ((rv = om_aead_decrypt(hs->k, hs->n, hs->h, OM_NOISE_HASHLEN, ct, len, out)) !=
		    0)
			return rv;
		hs->n++;
	}
	/* h covers the ciphertext, as in the spec. */
	return mix_hash(hs, ct, len);
}

/* --- HandshakeState ------------------------------------------------------------ */

static const char *
protocol_name(enum om_noise_pattern p)
{
	return p == OM_NOISE_IK ? "Noise_IK_25519_ChaChaPoly_SHA256"
	                        : "Noise_NK_25519_ChaChaPoly_SHA256";
}

static const enum token *
msg_tokens(const struct om_noise_hs *hs, int step)
{
	return hs->pattern == OM_NOISE_IK ? ik_msgs[step] : nk_msgs[step];
}

/* Is it this side's turn to write? Message 0 is the initiator's. */
static bool
my_turn(const struct om_noise_hs *hs)
{
	return (hs->step == 0) == hs->initiator;
}

/*
 * Bytes of message `step` besides the payload, and whether the payload is
 * encrypted.  Computed before any state changes so a short buffer or a short
 * message is refused without spoiling the handshake.
 */
static size_t
msg_overhead(const struct om_noise_hs *hs, int step, bool *keyed)
{
	const enum token *t = msg_tokens(hs, step);
	bool k = hs->has_k;
	size_t len = 0;

	for (; *t != TOK_END; t++) {
		switch (*t) {
		case TOK_E:
			len += DHLEN;
			break;
		case TOK_S:
			len += DHLEN + (k ? OM_NOISE_TAGLEN : 0);
			break;
		default:
			k = true; /* every DH token runs MixKey */
			break;
		}
	}
	*keyed = k;
	return len + (k ? OM_NOISE_TAGLEN : 0);
}

int
om_noise_hs_new(struct om_noise_hs **out, enum om_noise_pattern pattern, bool initiator,
                const uint8_t *prologue, size_t plen, const struct om_keypair *s, const uint8_t *rs)
{
	struct om_noise_hs *hs;
	const char *name;
	size_t nlen;
	int rv;

	*out = NULL;
	if (pattern != OM_NOISE_IK && pattern != OM_NOISE_NK)
		return OM_EINVAL;
	if (prologue == NULL && plen != 0)
		return OM_EINVAL;
	if (initiator && (rs == NULL || (pattern == OM_NOISE_IK && s == NULL)))
		return OM_EINVAL;
	if (!initiator && s == NULL)
		return OM_EINVAL;
	if ((hs = om_calloc(1, sizeof(*hs))) == NULL)
		return OM_ENOMEM;
	hs->pattern = pattern;
	hs->initiator = initiator;
	/* The NK initiator is anonymous: a static key passed anyway is ignored. */
	if (s != NULL && (pattern == OM_NOISE_IK || !initiator)) {
		hs->s = *s;
		hs->has_s = true;
	}
	/* A responder learns rs from message 1 (IK) or never (NK). */
	if (initiator) {
		memcpy(hs->rs, rs, DHLEN);
		hs->has_rs = true;
	}

	/* InitializeSymmetric: pad a short name, hash a long one. */
	name = protocol_name(pattern);
	nlen = strlen(name);
	if (nlen <= OM_NOISE_HASHLEN)
		memcpy(hs->h, name, nlen);
	else if ((rv = sha256_2((const uint8_t *)name, nlen, NULL, 0, hs->h)) != 0)
		goto fail;
	memcpy(hs->ck, hs->h, OM_NOISE_HASHLEN);

	if ((rv = mix_hash(hs, prologue, plen)) != 0)
		goto fail;
	/* Pre-message "<- s" of both patterns: the responder's static key. */
	rv = mix_hash(hs, initiator ? hs->rs : hs->s.pub, DHLEN);
	if (rv != 0)
		goto fail;
	*out = hs;
	return 0;
fail:
	om_noise_hs_free(hs);
	return rv;
}

int
om_noise_hs_set_ephemeral(struct om_noise_hs *hs, const uint8_t priv[OM_NOISE_KEYLEN])
{
	int rv;

	/* Only before this side has sent its "e" (each side sends one). */
	if (hs->failed || hs->step > (hs->initiator ? 0 : 1))
		return OM_EINVAL;
	memcpy(hs->e.priv, priv, OM_NOISE_KEYLEN);
	if ((rv = om_keypair_from_private(&hs->e)) != 0) {
		om_wipe(&hs->e, sizeof(hs->e));
		return rv;
	}
	hs->has_e = true;
	return 0;
}

/* Runs one DH token: the spec fixes which keys each side uses. */
static int
dh_token(struct om_noise_hs *hs, enum token t)
{
	const uint8_t *priv, *pub;
	uint8_t out[DHLEN];
	bool ok;
	int rv;

	switch (t) {
	case TOK_EE:
		ok = hs->has_e && hs->has_re;
		priv = hs->e.priv;
		pub = hs->re;
		break;
	case TOK_ES:
		ok = hs->initiator ? hs->has_e && hs->has_rs : hs->has_s && hs->has_re;
		priv = hs->initiator ? hs->e.priv : hs->s.priv;
		pub = hs->initiator ? hs->rs : hs->re;
		break;
	case TOK_SE:
		ok = hs->initiator ? hs->has_s && hs->has_re : hs->has_e && hs->has_rs;
		priv = hs->initiator ? hs->s.priv : hs->e.priv;
		pub = hs->initiator ? hs->re : hs->rs;
		break;
	case TOK_SS:
		ok = hs->has_s && hs->has_rs;
		priv = hs->s.priv;
		pub = hs->rs;
		break;
	default:
		return OM_EINVAL;
	}
	if (!ok)
		return OM_EINVAL;
	if ((rv = dh(priv, pub, out)) == 0)
		rv = mix_key(hs, out, DHLEN);
	om_wipe(out, sizeof(out));
	return rv;
}

static void
hs_fail(struct om_noise_hs *hs)
{
	hs->failed = true;
	om_wipe(hs->ck, sizeof(hs->ck));
	om_wipe(hs->k, sizeof(hs->k));
	om_wipe(&hs->e, sizeof(hs->e));
	om_wipe(&hs->s, sizeof(hs->s));
	hs->has_k = hs->has_e = hs->has_s = false;
}

int
om_noise_hs_write(struct om_noise_hs *hs, const uint8_t *payload, size_t plen, uint8_t *out,
                  size_t cap, size_t *outlen)
{
	const enum token *t;
	size_t need, off = 0, n;
	bool keyed;
	int rv = 0;

	*outlen = 0;
	if (hs->failed || hs->step >= 2 || !my_turn(hs))
		return OM_EINVAL;
	if (payload == NULL && plen != 0)
		return OM_EINVAL;
	need = msg_overhead(hs, hs->step, &keyed);
	if (plen > OM_NOISE_MAXMSG - need)
		return OM_EMSGSIZE;
	if (cap < need + plen)
		return OM_EMSGSIZE;

	for (t = msg_tokens(hs, hs->step); *t != TOK_END && rv == 0; t++) {
		switch (*t) {
		case TOK_E:
			if (!hs->has_e) {
				if ((rv = om_keypair_generate(&hs->e)) != 0)
					break;
				hs->has_e = true;
			}
			memcpy(out + off, hs->e.pub, DHLEN);
			off += DHLEN;
			rv = mix_hash(hs, hs->e.pub, DHLEN);
			break;
		case TOK_S:
			if (!hs->has_s) {
				rv = OM_EINVAL;
				break;
			}
			if ((rv = encrypt_and_hash(hs, hs->s.pub, DHLEN, out + off, &n)) == 0)
				off += n;
			break;
		default:
			rv = dh_token(hs, *t);
			break;
		}
	}
	if (rv == 0 && (rv = encrypt_and_hash(hs, payload, plen, out + off, &n)) == 0)
		off += n;
	if (rv != 0) {
		om_wipe(out, cap < need + plen ? cap : need + plen);
		hs_fail(hs);
		return rv;
	}
	hs->step++;
	*outlen = off;
	return 0;
}

int
om_noise_hs_read(struct om_noise_hs *hs, const uint8_t *msg, size_t len, uint8_t *payload,
                 size_t cap, size_t *plen)
{
	const enum token *t;
	size_t need, off = 0, slen;
	bool keyed;
	int rv = 0;

	*plen = 0;
	if (hs->failed || hs->step >= 2 || my_turn(hs))
		return OM_EINVAL;
	need = msg_overhead(hs, hs->step, &keyed);
	if (len > OM_NOISE_MAXMSG) {
		hs_fail(hs);
		return OM_EMSGSIZE;
	}
	if (len < need) {
		hs_fail(hs);
		return OM_EPROTO;
	}
	if (cap < len - need) {
		hs_fail(hs);
		return OM_EMSGSIZE;
	}

	for (t = msg_tokens(hs, hs->step); *t != TOK_END && rv == 0; t++) {
		switch (*t) {
		case TOK_E:
			memcpy(hs->re, msg + off, DHLEN);
			hs->has_re = true;
			off += DHLEN;
			rv = mix_hash(hs, hs->re, DHLEN);
			break;
		case TOK_S:
			slen = DHLEN + (hs->has_k ? OM_NOISE_TAGLEN : 0);
			if ((rv = decrypt_and_hash(hs, msg + off, slen, hs->rs)) == 0)
				hs->has_rs = true;
			off += slen;
			break;
		default:
			/* A low-order re or rs fails here with OM_ECRYPTO. */
			rv = dh_token(hs, *t);
			break;
		}
	}
	if (rv == 0)
		rv = decrypt_and_hash(hs, msg + off, len - off, payload);
	if (rv != 0) {
		hs_fail(hs);
		return rv;
	}
	hs->step++;
	*plen = len - need;
	return 0;
}

bool
om_noise_hs_done(const struct om_noise_hs *hs)
{
	return !hs->failed && hs->step >= 2;
}

int
om_noise_hs_split(struct om_noise_hs *hs, uint8_t tx[OM_NOISE_KEYLEN], uint8_t rx[OM_NOISE_KEYLEN])
{
	uint8_t k1[OM_NOISE_HASHLEN], k2[OM_NOISE_HASHLEN];
	int rv;

	if (!om_noise_hs_done(hs))
		return OM_EINVAL;
	if ((rv = hkdf2(hs->ck, NULL, 0, k1, k2)) == 0) {
		/* k1 protects initiator -> responder, k2 the other way. */
		memcpy(tx, hs->initiator ? k1 : k2, OM_NOISE_KEYLEN);
		memcpy(rx, hs->initiator ? k2 : k1, OM_NOISE_KEYLEN);
	}
	om_wipe(k1, sizeof(k1));
	om_wipe(k2, sizeof(k2));
	return rv;
}

void
om_noise_hs_hash(const struct om_noise_hs *hs, uint8_t h[OM_NOISE_HASHLEN])
{
	memcpy(h, hs->h, OM_NOISE_HASHLEN);
}

const uint8_t *
om_noise_hs_remote_static(const struct om_noise_hs *hs)
{
	return hs->has_rs && !hs->failed ? hs->rs : NULL;
}

void
om_noise_hs_free(struct om_noise_hs *hs)
{
	if (hs == NULL)
		return;
	om_wipe(hs, sizeof(*hs));
	om_free(hs);
}
