/*
 * The secure channel: HS1/HS2/DATA frames over Noise IK/NK, a sliding replay
 * window, and key files.  See om/chan.h for the frame layouts.
 *
 * One addition to the layout in the header: the plaintext of Noise message
 * 2 is sid(8) followed by the reply payload.  The sid also travels in clear
 * in the HS2 header (the initiator needs it before decrypting anything), and
 * the copy inside the handshake authenticates it: a flipped sid byte fails
 * om_chan_complete instead of yielding a channel whose frames go nowhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "om/chan.h"

#define SID_LEN 8
#define HS1_HDR 3             /* 'H' | version | pattern */
#define HS2_HDR (1 + SID_LEN) /* 'h' | sid */
/* Noise message sizes besides the payload (ephemeral, static, tags). */
#define IK_MSG1_OVERHEAD (32 + 32 + 16 + 16)
#define NK_MSG1_OVERHEAD (32 + 16)
#define MSG2_OVERHEAD    (32 + 16)
#define KEYFILE_MAX      128

static void
put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t
get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* --- replay window ------------------------------------------------------------- */

void
om_replay_init(struct om_replay *r)
{
	memset(r, 0, sizeof(*r));
}

int
om_replay_check(const struct om_replay *r, uint64_t ctr)
{
	uint64_t slot = ctr % OM_REPLAY_WINDOW;

	/* 2^64-1 is Noise's reserved nonce, and top = ctr + 1 must not wrap. */
	if (ctr == UINT64_MAX)
		return OM_EREPLAY;
	if (ctr >= r->top)
		return 0;
	if (r->top - ctr > OM_REPLAY_WINDOW)
		return OM_EREPLAY; /* older than the window: cannot tell, so refuse */
	if (r->bits[slot / 64] & (UINT64_C(1) << (slot % 64)))
		return OM_EREPLAY;
	return 0;
}

void
om_replay_commit(struct om_replay *r, uint64_t ctr)
{
	uint64_t slot, c;

	if (ctr >= r->top) {
		/*
		 * The slots of the counters we skip over last held counters
		 * that now fall out of the window: clear them.
		 */
		if (ctr - r->top >= OM_REPLAY_WINDOW) {
			memset(r->bits, 0, sizeof(r->bits));
		} else {
			for (c = r->top; c <= ctr; c++) {
				slot = c % OM_REPLAY_WINDOW;
				r->bits[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
			}
		}
		r->top = ctr + 1;
	}
	slot = ctr % OM_REPLAY_WINDOW;
	r->bits[slot / 64] |= UINT64_C(1) << (slot % 64);
}

/* --- handshake ------------------------------------------------------------------- */

static const char *
prologue_for(enum om_noise_pattern p)
{
	return p == OM_NOISE_IK ? OM_PROLOGUE_WORKER : OM_PROLOGUE_CLIENT;
}

int
om_chan_initiate(enum om_noise_pattern pattern, const struct om_keypair *local,
                 const uint8_t master_pub[OM_NOISE_KEYLEN], const uint8_t *payload, size_t plen,
                 struct om_noise_hs **hs, struct om_buf *out)
{
	uint8_t frame[HS1_HDR + IK_MSG1_OVERHEAD + OM_CHAN_MAX_HS_PAYLOAD];
	const char *pro;
	size_t mlen;
	int rv;

	*hs = NULL;
	if (pattern != OM_NOISE_IK && pattern != OM_NOISE_NK)
		return OM_EINVAL;
	if ((pattern == OM_NOISE_IK) != (local != NULL) || master_pub == NULL)
		return OM_EINVAL;
	if (plen > OM_CHAN_MAX_HS_PAYLOAD)
		return OM_EMSGSIZE;
	pro = prologue_for(pattern);
	rv = om_noise_hs_new(hs, pattern, true, (const uint8_t *)pro, strlen(pro), local,
	                     master_pub);
	if (rv != 0)
		return rv;
	frame[0] = OM_FRAME_HS1;
	frame[1] = OM_CHAN_VERSION;
	frame[2] = (uint8_t)pattern;
	rv = om_noise_hs_write(*hs, payload, plen, frame + HS1_HDR, sizeof(frame) - HS1_HDR, &mlen);
	if (rv == 0)
		rv = om_buf_append(out, frame, HS1_HDR + mlen);
	if (rv != 0) {
		om_noise_hs_free(*hs);
		*hs = NULL;
	}
	return rv;
}

int
om_chan_accept(const struct om_keypair *master, unsigned allowed, const uint8_t *frame, size_t n,
               enum om_noise_pattern *pattern, struct om_noise_hs **hs, uint8_t *payload,
               size_t cap, size_t *plen)
{
	enum om_noise_pattern p;
	const char *pro;
	size_t overhead;
	int rv;

	*hs = NULL;
	*plen = 0;
	/* Bound the work an unauthenticated peer can cause before any DH. */
	if (n > OM_CHAN_MAX_HS_FRAME)
		return OM_EMSGSIZE;
	if (n < HS1_HDR || frame[0] != OM_FRAME_HS1 || frame[1] != OM_CHAN_VERSION)
		return OM_EPROTO;
	if (frame[2] != OM_NOISE_IK && frame[2] != OM_NOISE_NK)
		return OM_EPROTO;
	p = (enum om_noise_pattern)frame[2];
	if (!(allowed & (1u << p)))
		return OM_EPERM;
	overhead = p == OM_NOISE_IK ? IK_MSG1_OVERHEAD : NK_MSG1_OVERHEAD;
	if (n - HS1_HDR < overhead)
		return OM_EPROTO;
	if (n - HS1_HDR - overhead > OM_CHAN_MAX_HS_PAYLOAD)
		return OM_EMSGSIZE;
	pro = prologue_for(p);
	rv = om_noise_hs_new(hs, p, false, (const uint8_t *)pro, strlen(pro), master, NULL);
	if (rv != 0)
		return rv;
	rv = om_noise_hs_read(*hs, frame + HS1_HDR, n - HS1_HDR, payload, cap, plen);
	if (rv != 0) {
		om_noise_hs_free(*hs);
		*hs = NULL;
		*plen = 0;
		return rv;
	}
	*pattern = p;
	return 0;
}

/* Fills *c from a finished handshake; c is untouched on failure. */
static int
chan_fill(struct om_noise_hs *hs, uint64_t sid, struct om_chan *c)
{
	struct om_chan nc;
	const uint8_t *rs;
	int rv;

	memset(&nc, 0, sizeof(nc));
	if ((rv = om_noise_hs_split(hs, nc.tx, nc.rx)) != 0) {
		om_chan_wipe(&nc);
		return rv;
	}
	nc.sid = sid;
	nc.tx_ctr = 0;
	om_replay_init(&nc.rx_win);
	/*
	 * The responder of IK learns the worker's key here; NK has none.  The
	 * initiator's "remote static" is the pinned master key it started with.
	 */
	if ((rs = om_noise_hs_remote_static(hs)) != NULL) {
		memcpy(nc.remote_static, rs, OM_NOISE_KEYLEN);
		nc.has_remote_static = true;
	}
	nc.established_ms = om_now_ms();
	*c = nc;
	om_chan_wipe(&nc);
	return 0;
}

int
om_chan_respond(struct om_noise_hs *hs, uint64_t sid, const uint8_t *payload, size_t plen,
                struct om_chan *c, struct om_buf *out)
{
	uint8_t inner[SID_LEN + OM_CHAN_MAX_HS_PAYLOAD];
	uint8_t frame[HS2_HDR + MSG2_OVERHEAD + SID_LEN + OM_CHAN_MAX_HS_PAYLOAD];
	struct om_chan nc;
	size_t mlen;
	int rv;

	if (plen > OM_CHAN_MAX_HS_PAYLOAD)
		return OM_EMSGSIZE;
	if (payload == NULL && plen != 0)
		return OM_EINVAL;
	put_be64(inner, sid);
	if (plen)
		memcpy(inner + SID_LEN, payload, plen);
	frame[0] = OM_FRAME_HS2;
	put_be64(frame + 1, sid);
	rv = om_noise_hs_write(hs, inner, SID_LEN + plen, frame + HS2_HDR, sizeof(frame) - HS2_HDR,
	                       &mlen);
	om_wipe(inner, sizeof(inner));
	if (rv != 0)
		return rv;
	if ((rv = chan_fill(hs, sid, &nc)) != 0)
		return rv;
	if ((rv = om_buf_append(out, frame, HS2_HDR + mlen)) != 0) {
		om_chan_wipe(&nc);
		return rv;
	}
	*c = nc;
	om_chan_wipe(&nc);
	return 0;
}

int
om_chan_complete(struct om_noise_hs *hs, const uint8_t *frame, size_t n, struct om_chan *c,
                 uint8_t *payload, size_t cap, size_t *plen)
{
	uint8_t inner[SID_LEN + OM_CHAN_MAX_HS_PAYLOAD];
	uint64_t sid;
	size_t ilen;
	int rv;

	*plen = 0;
	if (n > OM_CHAN_MAX_HS_FRAME)
		return OM_EMSGSIZE;
	if (n < HS2_HDR + MSG2_OVERHEAD + SID_LEN || frame[0] != OM_FRAME_HS2)
		return OM_EPROTO;
	if (n - HS2_HDR - MSG2_OVERHEAD - SID_LEN > OM_CHAN_MAX_HS_PAYLOAD)
		return OM_EMSGSIZE;
	sid = get_be64(frame + 1);
	rv = om_noise_hs_read(hs, frame + HS2_HDR, n - HS2_HDR, inner, sizeof(inner), &ilen);
	if (rv != 0)
		goto out;
	/* ilen >= SID_LEN: guaranteed by the length check above. */
	if (get_be64(inner) != sid) {
		rv = OM_ECRYPTO; /* the clear sid was altered on the way */
		goto out;
	}
	if (ilen - SID_LEN > cap) {
		rv = OM_EMSGSIZE;
		goto out;
	}
	if ((rv = chan_fill(hs, sid, c)) != 0)
		goto out;
	if (ilen > SID_LEN)
		memcpy(payload, inner + SID_LEN, ilen - SID_LEN);
	*plen = ilen - SID_LEN;
out:
	om_wipe(inner, sizeof(inner));
	return rv;
}

/* --- data frames ------------------------------------------------------------------- */

int
om_chan_seal(struct om_chan *c, const uint8_t *pt, size_t n, struct om_buf *out)
{
	uint8_t hdr[OM_FRAME_HDR];
	size_t old = out->len;
	int rv;

	if (pt == NULL && n != 0)
		return OM_EINVAL;
	/* Never reuse a nonce; 2^64-1 is reserved.  Reconnect long before. */
	if (c->tx_ctr == UINT64_MAX)
		return OM_ERANGE;
	hdr[0] = OM_FRAME_DATA;
	put_be64(hdr + 1, c->sid);
	put_be64(hdr + 1 + SID_LEN, c->tx_ctr);
	if (n > SIZE_MAX - OM_FRAME_HDR - OM_NOISE_TAGLEN)
		return OM_EMSGSIZE;
	/* Reserve the whole frame first, then encrypt into the reserved bytes. */
	if ((rv = om_buf_append(out, hdr, sizeof(hdr))) != 0)
		return rv;
	if ((rv = om_buf_append(out, pt, n)) != 0 ||
	    (rv = om_buf_append(out, hdr, OM_NOISE_TAGLEN)) != 0)
		goto fail;
	rv = om_aead_encrypt(c->tx, c->tx_ctr, hdr, sizeof(hdr), pt, n,
	                     out->data + old + OM_FRAME_HDR);
	if (rv != 0)
		goto fail;
	c->tx_ctr++;
	return 0;
fail:
	/* Leave no plaintext copy behind in the caller's buffer. */
	if (out->len > old)
		om_wipe(out->data + old, out->len - old);
	out->len = old;
	return rv;
}

int
om_chan_open(struct om_chan *c, const uint8_t *frame, size_t n, struct om_buf *pt)
{
	size_t old = pt->len, m;
	uint64_t ctr;
	int rv;

	if (n < OM_FRAME_HDR + OM_NOISE_TAGLEN || frame[0] != OM_FRAME_DATA)
		return OM_EPROTO;
	if (get_be64(frame + 1) != c->sid)
		return OM_ESESSION;
	ctr = get_be64(frame + 1 + SID_LEN);
	if ((rv = om_replay_check(&c->rx_win, ctr)) != 0)
		return rv;
	m = n - OM_FRAME_HDR - OM_NOISE_TAGLEN;
	/* Reserve room (the bytes copied are overwritten by the plaintext). */
	if ((rv = om_buf_append(pt, frame + OM_FRAME_HDR, m)) != 0)
		return rv;
	rv = om_aead_decrypt(c->rx, ctr, frame, OM_FRAME_HDR, frame + OM_FRAME_HDR,
	                     n - OM_FRAME_HDR, m ? pt->data + old : NULL);
	if (rv != 0) {
		pt->len = old;
		return rv;
	}
	/* Only an authentic frame may move the window. */
	om_replay_commit(&c->rx_win, ctr);
	return 0;
}

int
om_frame_peek(const uint8_t *frame, size_t n, uint8_t *type, uint64_t *sid)
{
	uint64_t s = 0;

	if (n < 1)
		return OM_EPROTO;
	switch (frame[0]) {
	case OM_FRAME_HS1:
		if (n < HS1_HDR)
			return OM_EPROTO;
		break;
	case OM_FRAME_HS2:
	case OM_FRAME_RESET:
		if (n < HS2_HDR)
			return OM_EPROTO;
		s = get_be64(frame + 1);
		break;
	case OM_FRAME_DATA:
		if (n < OM_FRAME_HDR)
			return OM_EPROTO;
		s = get_be64(frame + 1);
		break;
	default:
		return OM_EPROTO;
	}
	if (type != NULL)
		*type = frame[0];
	if (sid != NULL)
		*sid = s;
	return 0;
}

void
om_chan_wipe(struct om_chan *c)
{
	om_wipe(c, sizeof(*c));
}

/* --- keys ----------------------------------------------------------------------------- */

void
om_key_fingerprint(const uint8_t pub[OM_NOISE_KEYLEN], char out[65])
{
	uint8_t md[32];
	unsigned int len = 0;

	if (EVP_Digest(pub, OM_NOISE_KEYLEN, md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
		/* Never hand out a fingerprint that could match by accident. */
		memset(out, '?', 64);
		out[64] = '\0';
		return;
	}
	om_hex_encode(md, sizeof(md), out);
}

/*
 * A key file must not be readable or writable by group or other: such a
 * file is refused (OM_EPERM) rather than used, as ssh does with identity
 * files, because the private key may already have leaked.  The mode is
 * checked on the descriptor we read from, so the check and the read see the
 * same file.
 */
int
om_key_load(const char *path, struct om_keypair *kp)
{
	char text[KEYFILE_MAX + 1];
	struct stat st;
	size_t got = 0;
	ssize_t r;
	int fd, rv;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return errno == ENOENT ? OM_ENOTFOUND : errno == EACCES ? OM_EPERM : OM_EIO;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return OM_EIO;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return OM_EINVAL;
	}
	if (st.st_mode & 077) {
		close(fd);
		return OM_EPERM;
	}
	while (got < KEYFILE_MAX) {
		r = read(fd, text + got, KEYFILE_MAX - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			om_wipe(text, sizeof(text));
			return OM_EIO;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	/* Exactly 64 hex digits, then one optional newline. */
	rv = OM_EINVAL;
	if (got == 2 * OM_NOISE_KEYLEN + 1 && text[got - 1] == '\n')
		got--;
	if (got == 2 * OM_NOISE_KEYLEN) {
		text[got] = '\0';
		rv = om_hex_decode(text, kp->priv, OM_NOISE_KEYLEN);
		if (rv == 0)
			rv = om_keypair_from_private(kp);
		if (rv != 0)
			om_wipe(kp, sizeof(*kp));
	}
	om_wipe(text, sizeof(text));
	return rv;
}

/*
 * Creation never replaces an existing key (a new master key would orphan
 * every worker that pinned the old one): the file is written under a
 * temporary name and then hard-linked into place, which fails if another
 * process got there first; we then load the winner's key.
 */
int
om_key_load_or_create(const char *path, struct om_keypair *kp, bool *created)
{
	char text[2 * OM_NOISE_KEYLEN + 2];
	struct om_buf tmp;
	int rv;

	if (created != NULL)
		*created = false;
	rv = om_key_load(path, kp);
	if (rv != OM_ENOTFOUND)
		return rv;
	if ((rv = om_keypair_generate(kp)) != 0)
		return rv;
	om_hex_encode(kp->priv, OM_NOISE_KEYLEN, text);
	text[2 * OM_NOISE_KEYLEN] = '\n';
	text[2 * OM_NOISE_KEYLEN + 1] = '\0';

	om_buf_init(&tmp, 4096);
	om_buf_printf(&tmp, "%s.new.%d", path, (int)getpid());
	om_buf_putc(&tmp, '\0');
	if ((rv = tmp.err) != 0)
		goto out;
	rv = om_write_file((const char *)tmp.data, text, 2 * OM_NOISE_KEYLEN + 1, 0600);
	if (rv != 0)
		goto out;
	if (link((const char *)tmp.data, path) != 0) {
		rv = errno == EEXIST ? 1 : OM_EIO;
	} else {
		rv = 0;
		if (created != NULL)
			*created = true;
	}
	unlink((const char *)tmp.data);
	if (rv == 1) /* lost the race: use the key that is there */
		rv = om_key_load(path, kp);
out:
	om_wipe(text, sizeof(text));
	om_buf_release(&tmp);
	if (rv != 0)
		om_wipe(kp, sizeof(*kp));
	return rv;
}
