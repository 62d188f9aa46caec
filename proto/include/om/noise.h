/*
 * Noise Protocol Framework, Noise_IK and Noise_NK with 25519/ChaChaPoly/SHA256,
 * on OpenSSL 3 (https://noiseprotocol.org/noise.html, revision 34).
 *
 * Used for: workers (IK: master static key pinned, worker static proven) and
 * omctl (NK: master static pinned, client anonymous).  The implementation
 * reproduces the cacophony vectors in shared/testvectors/noise/ byte for byte.
 *
 * Ownership: a handshake object is owned by its creator and freed with
 * om_noise_hs_free, which wipes every secret it holds.
 */
#ifndef OM_NOISE_H
#define OM_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OM_NOISE_KEYLEN  32
#define OM_NOISE_HASHLEN 32
#define OM_NOISE_TAGLEN  16
#define OM_NOISE_MAXMSG  65535 /* Noise's own message limit */

struct om_keypair {
	uint8_t pub[OM_NOISE_KEYLEN];
	uint8_t priv[OM_NOISE_KEYLEN];
};

/* Fresh X25519 key pair from the OS random source. */
int om_keypair_generate(struct om_keypair *kp);
/* Derives pub from priv (kp->priv must be set). */
int om_keypair_from_private(struct om_keypair *kp);

enum om_noise_pattern {
	OM_NOISE_IK = 1,
	OM_NOISE_NK = 2,
};

struct om_noise_hs; /* opaque HandshakeState */

/*
 * Starts a handshake.  s: the local static key pair (required for IK
 * initiator and for every responder; NULL for the NK initiator).  rs: the
 * remote static public key (required for every initiator: the pinned master
 * key; NULL for responders, IK responders learn it from message 1).
 * prologue may be NULL when plen is 0.  The handshake copies what it needs.
 */
int om_noise_hs_new(struct om_noise_hs **out, enum om_noise_pattern pattern, bool initiator,
                    const uint8_t *prologue, size_t plen, const struct om_keypair *s,
                    const uint8_t *rs);

/* Test vectors only: use this fixed ephemeral private key instead of a random one. */
int om_noise_hs_set_ephemeral(struct om_noise_hs *hs, const uint8_t priv[OM_NOISE_KEYLEN]);

/*
 * Writes the next handshake message carrying payload into out (cap bytes);
 * *outlen receives its length.  OM_EINVAL when it is not our turn.
 */
int om_noise_hs_write(struct om_noise_hs *hs, const uint8_t *payload, size_t plen, uint8_t *out,
                      size_t cap, size_t *outlen);

/*
 * Reads the peer's next handshake message; the decrypted payload goes to
 * payload (cap bytes), its length to *plen.  OM_ECRYPTO on a bad tag or an
 * invalid public key, OM_EPROTO on a short message.  After a failure the
 * handshake object is unusable.
 */
int om_noise_hs_read(struct om_noise_hs *hs, const uint8_t *msg, size_t len, uint8_t *payload,
                     size_t cap, size_t *plen);

bool om_noise_hs_done(const struct om_noise_hs *hs);

/*
 * After the last message: the two transport keys, already oriented for this
 * side (tx: what we encrypt with; rx: what the peer encrypts with).
 */
int om_noise_hs_split(struct om_noise_hs *hs, uint8_t tx[OM_NOISE_KEYLEN],
                      uint8_t rx[OM_NOISE_KEYLEN]);

/* The handshake hash h (valid once done). */
void om_noise_hs_hash(const struct om_noise_hs *hs, uint8_t h[OM_NOISE_HASHLEN]);

/* The peer's static public key once known (IK responder after message 1), else NULL. */
const uint8_t *om_noise_hs_remote_static(const struct om_noise_hs *hs);

void om_noise_hs_free(struct om_noise_hs *hs);

/*
 * ChaCha20-Poly1305 with Noise's nonce layout (4 zero bytes, then the 64-bit
 * counter little-endian).  out receives n + 16 bytes (encrypt) or n - 16
 * (decrypt).  Decrypt returns OM_ECRYPTO on a bad tag and leaves no plaintext.
 */
int om_aead_encrypt(const uint8_t key[OM_NOISE_KEYLEN], uint64_t nonce, const uint8_t *ad,
                    size_t adlen, const uint8_t *in, size_t n, uint8_t *out);
int om_aead_decrypt(const uint8_t key[OM_NOISE_KEYLEN], uint64_t nonce, const uint8_t *ad,
                    size_t adlen, const uint8_t *in, size_t n, uint8_t *out);

/* Constant-time comparison: 0 when equal. */
int om_ct_memcmp(const void *a, const void *b, size_t n);
/* Wipes memory in a way the compiler keeps. */
void om_wipe(void *p, size_t n);

#endif
