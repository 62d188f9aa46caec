/*
 * The worker's SSH login key in memory: see sshkey.h.  The file format is
 * OpenSSH's PROTOCOL.key ("openssh-key-v1"); only what an unencrypted
 * ed25519 key holds is accepted, everything else is OM_ETYPE.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "om/base.h"
#include "sshkey.h"

#define KEY_FILE_MAX (64 * 1024) /* an ed25519 key file is about 400 bytes */
#define ED25519_LEN  32
#define ED25519_SIG  64

static const char BEGIN[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
static const char END[] = "-----END OPENSSH PRIVATE KEY-----";
static const char MAGIC[] = "openssh-key-v1"; /* with its NUL: 15 bytes */
static const char KTYPE[] = "ssh-ed25519";

struct om_sshkey {
	EVP_PKEY *pkey;
	unsigned char blob[4 + sizeof(KTYPE) - 1 + 4 + ED25519_LEN];
};

/* A cursor over decoded bytes: each reader advances only on success. */
struct rd {
	const unsigned char *p, *end;
};

static int
rd_u32(struct rd *r, uint32_t *v)
{
	if (r->end - r->p < 4)
		return OM_EPROTO;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	return 0;
}

/* An SSH string: a length and that many bytes (not copied). */
static int
rd_str(struct rd *r, const unsigned char **s, size_t *len)
{
	struct rd save = *r;
	uint32_t n;

	if (rd_u32(r, &n) != 0 || (size_t)(r->end - r->p) < n) {
		*r = save;
		return OM_EPROTO;
	}
	*s = r->p;
	*len = n;
	r->p += n;
	return 0;
}

static bool
str_is(const unsigned char *s, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(s, want, len) == 0;
}

static int
read_file(const char *path, char **out, size_t *len)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? OM_ENOTFOUND : errno == EACCES ? OM_EPERM : OM_EIO;
	if (fstat(fd, &st) != 0 || st.st_size < 0 || st.st_size > KEY_FILE_MAX) {
		close(fd);
		return OM_ETYPE; /* not a key we hold: libssh2 may still know it */
	}
	if ((buf = om_malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return OM_ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	rc = got == (size_t)st.st_size ? 0 : OM_EIO;
	close(fd);
	if (rc != 0) {
		OPENSSL_cleanse(buf, (size_t)st.st_size);
		om_free(buf);
		return rc;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

/* The base64 between the armour lines, decoded into *der (om_free after a cleanse). */
static int
unarmour(const char *text, size_t len, unsigned char **der, size_t *der_len)
{
	const char *b = memmem(text, len, BEGIN, sizeof(BEGIN) - 1), *e;
	EVP_ENCODE_CTX *ctx;
	unsigned char *out;
	int n = 0, fin = 0, ok;

	if (b == NULL)
		return OM_ETYPE;
	b += sizeof(BEGIN) - 1;
	if ((e = memmem(b, len - (size_t)(b - text), END, sizeof(END) - 1)) == NULL)
		return OM_EPROTO;
	if ((out = om_malloc((size_t)(e - b) / 4 * 3 + 3)) == NULL)
		return OM_ENOMEM;
	if ((ctx = EVP_ENCODE_CTX_new()) == NULL) {
		om_free(out);
		return OM_ENOMEM;
	}
	EVP_DecodeInit(ctx);
	/* EVP_DecodeUpdate skips the newlines; -1 is an invalid character. */
	ok = EVP_DecodeUpdate(ctx, out, &n, (const unsigned char *)b, (int)(e - b)) >= 0 &&
	     EVP_DecodeFinal(ctx, out + n, &fin) >= 0;
	EVP_ENCODE_CTX_free(ctx);
	if (!ok) {
		om_free(out);
		return OM_EPROTO;
	}
	*der = out;
	*der_len = (size_t)n + (size_t)fin;
	return 0;
}

/* PROTOCOL.key: the one ed25519 key of an unencrypted file. */
static int
parse(const unsigned char *der, size_t len, const unsigned char **pub,
      const unsigned char **seed)
{
	struct rd r = {der, der + len}, pr, pb;
	const unsigned char *s, *pk, *sk;
	size_t n, pklen, sklen;
	uint32_t nkeys, c1, c2;

	if (len < sizeof(MAGIC) || memcmp(der, MAGIC, sizeof(MAGIC)) != 0)
		return OM_EPROTO;
	r.p += sizeof(MAGIC);
	if (rd_str(&r, &s, &n) != 0)
		return OM_EPROTO;
	if (!str_is(s, n, "none")) /* a passphrase: libssh2's business */
		return OM_ETYPE;
	if (rd_str(&r, &s, &n) != 0 || !str_is(s, n, "none") || rd_str(&r, &s, &n) != 0 ||
	    rd_u32(&r, &nkeys) != 0)
		return OM_EPROTO;
	if (nkeys != 1)
		return OM_ETYPE;
	/* The public key blob. */
	if (rd_str(&r, &s, &n) != 0)
		return OM_EPROTO;
	pb.p = s;
	pb.end = s + n;
	if (rd_str(&pb, &s, &n) != 0)
		return OM_EPROTO;
	if (!str_is(s, n, KTYPE))
		return OM_ETYPE;
	if (rd_str(&pb, &pk, &pklen) != 0 || pklen != ED25519_LEN || pb.p != pb.end)
		return OM_EPROTO;
	/* The private section: two equal check numbers, then the key again with its secret. */
	if (rd_str(&r, &s, &n) != 0)
		return OM_EPROTO;
	pr.p = s;
	pr.end = s + n;
	if (rd_u32(&pr, &c1) != 0 || rd_u32(&pr, &c2) != 0 || c1 != c2 ||
	    rd_str(&pr, &s, &n) != 0 || !str_is(s, n, KTYPE) || rd_str(&pr, &s, &n) != 0 ||
	    n != ED25519_LEN || memcmp(s, pk, ED25519_LEN) != 0 ||
	    rd_str(&pr, &sk, &sklen) != 0 || sklen != 2 * ED25519_LEN ||
	    memcmp(sk + ED25519_LEN, pk, ED25519_LEN) != 0)
		return OM_EPROTO;
	*pub = pk;
	*seed = sk; /* the first half: OpenSSH stores seed || public key */
	return 0;
}

int
om_sshkey_load(const char *path, struct om_sshkey **out)
{
	struct om_sshkey *k = NULL;
	const unsigned char *pub, *seed;
	unsigned char *der = NULL, check[ED25519_LEN], *p;
	size_t len, der_len = 0, clen = sizeof(check);
	char *text = NULL;
	int rc;

	*out = NULL;
	if ((rc = read_file(path, &text, &len)) != 0)
		return rc;
	if ((rc = unarmour(text, len, &der, &der_len)) != 0)
		goto out;
	if ((rc = parse(der, der_len, &pub, &seed)) != 0)
		goto out;
	rc = OM_ENOMEM;
	if ((k = om_calloc(1, sizeof(*k))) == NULL)
		goto out;
	if ((k->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, ED25519_LEN)) ==
	    NULL)
		goto out;
	/* The public key the file states must be the one its secret makes. */
	rc = OM_EPROTO;
	if (EVP_PKEY_get_raw_public_key(k->pkey, check, &clen) != 1 || clen != ED25519_LEN ||
	    memcmp(check, pub, ED25519_LEN) != 0)
		goto out;
	p = k->blob;
	p[0] = p[1] = p[2] = 0;
	p[3] = sizeof(KTYPE) - 1;
	memcpy(p + 4, KTYPE, sizeof(KTYPE) - 1);
	p += 4 + sizeof(KTYPE) - 1;
	p[0] = p[1] = p[2] = 0;
	p[3] = ED25519_LEN;
	memcpy(p + 4, pub, ED25519_LEN);
	*out = k;
	k = NULL;
	rc = 0;
out:
	om_sshkey_free(k);
	if (der != NULL) {
		OPENSSL_cleanse(der, der_len);
		om_free(der);
	}
	if (text != NULL) {
		OPENSSL_cleanse(text, len);
		om_free(text);
	}
	return rc;
}

const unsigned char *
om_sshkey_blob(const struct om_sshkey *k, size_t *len)
{
	*len = sizeof(k->blob);
	return k->blob;
}

int
om_sshkey_sign(LIBSSH2_SESSION *session, unsigned char **sig, size_t *sig_len,
               const unsigned char *data, size_t data_len, void **abstract)
{
	const struct om_sshkey *k = *abstract;
	EVP_MD_CTX *ctx;
	unsigned char *s;
	size_t n = ED25519_SIG;
	int ok;

	(void)session;
	/* malloc, not om_malloc: libssh2 frees it with its default free(). */
	if (k == NULL || (s = malloc(ED25519_SIG)) == NULL)
		return -1;
	if ((ctx = EVP_MD_CTX_new()) == NULL) {
		free(s);
		return -1;
	}
	ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
	     EVP_DigestSign(ctx, s, &n, data, data_len) == 1 && n == ED25519_SIG;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		free(s);
		return -1;
	}
	*sig = s; /* the raw signature: libssh2 puts the key type in front */
	*sig_len = n;
	return 0;
}

void
om_sshkey_free(struct om_sshkey *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey); /* OpenSSL clears the key material */
	om_free(k);
}
