/*
 * Fuzz target for the channel's untrusted edges: data is one frame, fed to
 * om_frame_peek, to om_chan_accept (a responder with a fixed master key), to
 * om_chan_complete (an NK initiator waiting for HS2) and to om_chan_open on
 * a fixed established channel.  Everything is rebuilt per input so a run
 * does not depend on earlier inputs.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "om/chan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SID UINT64_C(0x0102030405060708)

static void
fixed_key(struct om_keypair *kp, uint8_t fill)
{
	memset(kp->priv, fill, sizeof(kp->priv));
	om_keypair_from_private(kp);
}

static void
fuzz_accept(const struct om_keypair *master, const uint8_t *data, size_t size)
{
	uint8_t payload[OM_CHAN_MAX_HS_PAYLOAD];
	enum om_noise_pattern pattern;
	struct om_noise_hs *hs = NULL;
	struct om_buf out;
	struct om_chan c;
	size_t plen;

	if (om_chan_accept(master, (1u << OM_NOISE_IK) | (1u << OM_NOISE_NK), data, size, &pattern,
	                   &hs, payload, sizeof(payload), &plen) != 0)
		return;
	/* Not reachable without the master key, but keep the path leak-free. */
	om_buf_init(&out, OM_CHAN_MAX_HS_FRAME);
	if (om_chan_respond(hs, FUZZ_SID, NULL, 0, &c, &out) == 0)
		om_chan_wipe(&c);
	om_buf_release(&out);
	om_noise_hs_free(hs);
}

static void
fuzz_complete(const struct om_keypair *master, const uint8_t *data, size_t size)
{
	static const uint8_t eph[OM_NOISE_KEYLEN] = {7};
	uint8_t msg[256], payload[OM_CHAN_MAX_HS_PAYLOAD];
	struct om_noise_hs *hs;
	struct om_chan c;
	size_t mlen, plen;

	if (om_noise_hs_new(&hs, OM_NOISE_NK, true, (const uint8_t *)OM_PROLOGUE_CLIENT,
	                    strlen(OM_PROLOGUE_CLIENT), NULL, master->pub) != 0)
		return;
	if (om_noise_hs_set_ephemeral(hs, eph) == 0 &&
	    om_noise_hs_write(hs, NULL, 0, msg, sizeof(msg), &mlen) == 0 &&
	    om_chan_complete(hs, data, size, &c, payload, sizeof(payload), &plen) == 0)
		om_chan_wipe(&c);
	om_noise_hs_free(hs);
}

static void
fuzz_open(const uint8_t *data, size_t size)
{
	struct om_chan c;
	struct om_buf pt;

	memset(&c, 0, sizeof(c));
	c.sid = FUZZ_SID;
	memset(c.tx, 0x11, sizeof(c.tx));
	memset(c.rx, 0x22, sizeof(c.rx));
	om_replay_init(&c.rx_win);
	/* Some history, so the window's old-counter paths are reachable. */
	om_replay_commit(&c.rx_win, 3);
	om_replay_commit(&c.rx_win, 2000);
	om_buf_init(&pt, 1 << 20);
	om_chan_open(&c, data, size, &pt);
	om_buf_release(&pt);
	om_chan_wipe(&c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct om_keypair master;
	uint8_t type;
	uint64_t sid;

	fixed_key(&master, 0x42);
	om_frame_peek(data, size, &type, &sid);
	fuzz_accept(&master, data, size);
	fuzz_complete(&master, data, size);
	fuzz_open(data, size);
	om_wipe(&master, sizeof(master));
	return 0;
}
