/*
 * The secure channel: frames on top of Noise.  There is no plaintext mode:
 * every frame after the first handshake message is bound to a session key.
 *
 * Frame layouts (all integers big-endian):
 *   HS1   'H' | version(1) | pattern(1) | noise message 1
 *   HS2   'h' | sid(8) | noise message 2, whose plaintext payload is
 *              sid(8) | reply: the inner copy authenticates the clear sid
 *   DATA  'D' | sid(8) | counter(8) | ChaCha20-Poly1305(tx key, nonce=counter,
 *              ad = the 17 header bytes) of the payload
 *
 * Each DATA frame carries an explicit 64-bit counter used as the nonce; the
 * receiver keeps a sliding replay window, so frames may arrive out of order
 * (several nng contexts in flight) but never twice.  A counter is committed
 * to the window only after the tag verified, so forged frames cannot move it.
 *
 * Ownership: struct om_chan is plain data owned by the caller; it holds keys,
 * so release it with om_chan_wipe.  Not thread-safe: callers serialise seal
 * and open on one channel (a mutex in the RPC layer).
 */
#ifndef OM_CHAN_H
#define OM_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "om/base.h"
#include "om/noise.h"

#define OM_CHAN_VERSION        1
#define OM_FRAME_HS1           'H'
#define OM_FRAME_HS2           'h'
#define OM_FRAME_DATA          'D'
#define OM_FRAME_RESET         'R'  /* 'R' | sid(8), unauthenticated: no such session (om/rpc.h) */
#define OM_FRAME_HDR           17   /* type + sid + counter */
#define OM_REPLAY_WINDOW       1024 /* counters behind the highest still accepted */
#define OM_CHAN_MAX_HS_PAYLOAD 4096 /* handshake payloads are small */
#define OM_CHAN_MAX_HS_FRAME   8192 /* HS1/HS2 bound before any crypto (= OM_MAX_FRAME_PREAUTH) */

/* The prologue binds the frame version and the role into the handshake hash. */
#define OM_PROLOGUE_WORKER "omserver/1 worker"
#define OM_PROLOGUE_CLIENT "omserver/1 client"

struct om_replay {
	uint64_t top;                         /* highest counter accepted + 1; 0 = none yet */
	uint64_t bits[OM_REPLAY_WINDOW / 64]; /* bit (c % WINDOW) set: counter c seen */
};

void om_replay_init(struct om_replay *r);
/* 0 when ctr is new and inside the window, OM_EREPLAY otherwise.  Read-only. */
int om_replay_check(const struct om_replay *r, uint64_t ctr);
/* Marks ctr as seen (call only after om_replay_check passed and the tag verified). */
void om_replay_commit(struct om_replay *r, uint64_t ctr);

struct om_chan {
	uint64_t sid;                /* chosen by the responder, random */
	uint8_t tx[OM_NOISE_KEYLEN]; /* our sending key */
	uint8_t rx[OM_NOISE_KEYLEN]; /* the peer's sending key */
	uint64_t tx_ctr;             /* next counter to send */
	struct om_replay rx_win;
	uint8_t remote_static[OM_NOISE_KEYLEN]; /* peer static: worker (IK responder), master
	                                           (initiator) */
	bool has_remote_static;
	int64_t established_ms; /* om_now_ms at the handshake, for rekey by age */
};

/*
 * Initiator, step 1: builds the HS1 frame into out (appended) and returns the
 * handshake object in *hs (caller frees with om_noise_hs_free).
 * pattern IK needs local (the worker's static key); NK takes local == NULL.
 * master_pub is the pinned master static key.
 */
int om_chan_initiate(enum om_noise_pattern pattern, const struct om_keypair *local,
                     const uint8_t master_pub[OM_NOISE_KEYLEN], const uint8_t *payload, size_t plen,
                     struct om_noise_hs **hs, struct om_buf *out);

/*
 * Initiator, step 2: reads the HS2 frame, fills *c and the reply payload
 * (payload, cap bytes, length in *plen).  Frees nothing; the caller frees hs.
 */
int om_chan_complete(struct om_noise_hs *hs, const uint8_t *frame, size_t n, struct om_chan *c,
                     uint8_t *payload, size_t cap, size_t *plen);

/*
 * Responder, step 1: reads an HS1 frame with the master's static key.  The
 * pattern comes from the frame and must be one of allowed (a bit mask of
 * 1 << pattern).  On success *hs is the handshake (caller frees), *pattern
 * is set, and the initiator's payload is in payload (length in *plen).
 */
int om_chan_accept(const struct om_keypair *master, unsigned allowed, const uint8_t *frame,
                   size_t n, enum om_noise_pattern *pattern, struct om_noise_hs **hs,
                   uint8_t *payload, size_t cap, size_t *plen);

/*
 * Responder, step 2: writes the HS2 frame (with sid and the reply payload)
 * to out and fills *c (sid, keys, remote static for IK).
 */
int om_chan_respond(struct om_noise_hs *hs, uint64_t sid, const uint8_t *payload, size_t plen,
                    struct om_chan *c, struct om_buf *out);

/* Appends one DATA frame sealing pt to out; advances tx_ctr. */
int om_chan_seal(struct om_chan *c, const uint8_t *pt, size_t n, struct om_buf *out);

/*
 * Opens one DATA frame: checks the sid, the replay window, the tag, then
 * commits the counter.  The plaintext is appended to pt.  OM_EPROTO (short
 * or wrong type), OM_ESESSION (other sid), OM_EREPLAY, OM_ECRYPTO.
 */
int om_chan_open(struct om_chan *c, const uint8_t *frame, size_t n, struct om_buf *pt);

/*
 * Reads the frame type and, for HS2, DATA and RESET frames, the sid (0 for
 * HS1).  OM_EPROTO for an unknown type or a frame too short for its header.
 */
int om_frame_peek(const uint8_t *frame, size_t n, uint8_t *type, uint64_t *sid);

void om_chan_wipe(struct om_chan *c);

/* SHA-256 of a public key, hex (65 bytes with NUL): the fingerprint people compare. */
void om_key_fingerprint(const uint8_t pub[OM_NOISE_KEYLEN], char out[65]);

/*
 * Key files: the private key as 64 hex digits and a newline, mode 0600;
 * om_key_load_or_create makes one on first use.  Public keys travel as hex.
 * om_key_load: OM_ENOTFOUND when missing, OM_EPERM when any group or other
 * permission bit is set (the key may have leaked: refuse rather than use),
 * OM_EINVAL when not a regular file or malformed.  Creation never replaces
 * an existing file (temp file + link), so two racing processes agree.
 */
int om_key_load(const char *path, struct om_keypair *kp);
int om_key_load_or_create(const char *path, struct om_keypair *kp, bool *created);

#endif
