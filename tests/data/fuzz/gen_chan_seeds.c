/*
 * Writes the seeds of fuzz_chan into chan/: frames that get past the first
 * checks of each path the harness drives, built with the harness's fixed
 * keys (master private key 0x42..., NK initiator ephemeral {7}, DATA keys
 * 0x11.../0x22..., sid 0x0102030405060708).  Rerun after the frame layout
 * or the handshake changes:
 *
 *   cc -std=c11 -D_GNU_SOURCE -Iproto/include tests/data/fuzz/gen_chan_seeds.c \
 *      proto/chan.c proto/noise.c proto/base.c proto/err.c -lcrypto -o /tmp/genchan
 *   /tmp/genchan tests/data/fuzz
 *
 * The HS1 frames carry a random ephemeral key, so they differ on every run;
 * the HS2 frame completes the harness's NK initiator (whose ephemeral key is
 * fixed) whatever the responder's ephemeral key.
 */
#include <stdio.h>
#include <string.h>

#include "om/chan.h"

#define FUZZ_SID UINT64_C(0x0102030405060708)

static int
save(const char *dir, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/chan/%s.bin", dir, name);
	if ((f = fopen(path, "wb")) == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

static int
save_buf(const char *dir, const char *name, struct om_buf *b)
{
	int rc = save(dir, name, b->data, b->len);

	om_buf_release(b);
	return rc;
}

/* A DATA frame as the harness's peer would seal it: its tx key is the harness's rx. */
static int
data_frame(const char *dir, const char *name, uint64_t ctr, const void *pt, size_t n)
{
	struct om_chan c;
	struct om_buf b;

	memset(&c, 0, sizeof(c));
	c.sid = FUZZ_SID;
	memset(c.tx, 0x22, sizeof(c.tx));
	memset(c.rx, 0x11, sizeof(c.rx));
	c.tx_ctr = ctr;
	om_buf_init(&b, 1 << 20);
	if (om_chan_seal(&c, pt, n, &b) != 0) {
		fprintf(stderr, "%s: seal failed\n", name);
		return 1;
	}
	return save_buf(dir, name, &b);
}

int
main(int argc, char **argv)
{
	static const uint8_t eph[OM_NOISE_KEYLEN] = {7};
	static const uint8_t hello[] = "\x81\xa1\x74\x03"; /* {"t": HEARTBEAT} */
	struct om_keypair master, worker;
	struct om_noise_hs *hs, *rhs;
	enum om_noise_pattern pattern;
	uint8_t frame[512], payload[OM_CHAN_MAX_HS_PAYLOAD];
	struct om_buf b;
	struct om_chan c;
	size_t mlen, plen;
	int bad = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s tests/data/fuzz\n", argv[0]);
		return 2;
	}
	memset(master.priv, 0x42, sizeof(master.priv));
	memset(worker.priv, 0x43, sizeof(worker.priv));
	if (om_keypair_from_private(&master) != 0 || om_keypair_from_private(&worker) != 0)
		return 1;

	/* HS1, both patterns, with a small payload: om_chan_accept takes them. */
	om_buf_init(&b, OM_CHAN_MAX_HS_FRAME);
	if (om_chan_initiate(OM_NOISE_IK, &worker, master.pub, hello, 4, &hs, &b) != 0)
		return 1;
	om_noise_hs_free(hs);
	bad |= save_buf(argv[1], "hs1-ik", &b);
	om_buf_init(&b, OM_CHAN_MAX_HS_FRAME);
	if (om_chan_initiate(OM_NOISE_NK, NULL, master.pub, hello, 4, &hs, &b) != 0)
		return 1;
	om_noise_hs_free(hs);
	bad |= save_buf(argv[1], "hs1-nk", &b);

	/* HS2 for the harness's NK initiator: its message 1 through a real responder. */
	if (om_noise_hs_new(&hs, OM_NOISE_NK, true, (const uint8_t *)OM_PROLOGUE_CLIENT,
	                    strlen(OM_PROLOGUE_CLIENT), NULL, master.pub) != 0 ||
	    om_noise_hs_set_ephemeral(hs, eph) != 0 ||
	    om_noise_hs_write(hs, NULL, 0, frame + 3, sizeof(frame) - 3, &mlen) != 0)
		return 1;
	frame[0] = OM_FRAME_HS1;
	frame[1] = OM_CHAN_VERSION;
	frame[2] = OM_NOISE_NK;
	if (om_chan_accept(&master, 1u << OM_NOISE_NK, frame, 3 + mlen, &pattern, &rhs, payload,
	                   sizeof(payload), &plen) != 0)
		return 1;
	om_buf_init(&b, OM_CHAN_MAX_HS_FRAME);
	if (om_chan_respond(rhs, FUZZ_SID, hello, 4, &c, &b) != 0)
		return 1;
	om_chan_wipe(&c);
	om_noise_hs_free(rhs);
	/* Check it: the harness's om_chan_complete must take it. */
	if (om_chan_complete(hs, b.data, b.len, &c, payload, sizeof(payload), &plen) != 0) {
		fprintf(stderr, "hs2: the harness's initiator refuses it\n");
		bad = 1;
	}
	om_chan_wipe(&c);
	om_noise_hs_free(hs);
	bad |= save_buf(argv[1], "hs2", &b);

	/* DATA: a new counter, one inside the window, one too old; an empty payload. */
	bad |= data_frame(argv[1], "data-new", 2001, hello, 4);
	bad |= data_frame(argv[1], "data-window", 1500, hello, 4);
	bad |= data_frame(argv[1], "data-old", 500, hello, 4);
	bad |= data_frame(argv[1], "data-empty", 2002, "", 0);

	/* RESET: type and sid only. */
	bad |= save(argv[1], "reset", "R\x01\x02\x03\x04\x05\x06\x07\x08", 9);
	return bad;
}
