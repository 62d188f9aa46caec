/*
 * The worker's SSH login key, parsed once and held in memory.
 *
 * libssh2's publickey_fromfile reads and parses the key file for every
 * login, twice (once for the public half, once to sign), and with OpenSSL 3
 * each parse first runs the whole PEM decoder machinery, which fails on an
 * OpenSSH-format key before libssh2 tries its own parser: about half of
 * the worker's CPU per fresh connection (bench/, issue 7).  This holds an
 * unencrypted OpenSSH-format ed25519 key (what ssh-keygen -t ed25519 -N ''
 * writes) as an OpenSSL key, and signs with it through libssh2's
 * callback API.  Any other key (RSA, ECDSA, a passphrase) is OM_ETYPE: the
 * engine then keeps using libssh2's file path for it.
 */
#ifndef OM_WORKER_SSHKEY_H
#define OM_WORKER_SSHKEY_H

#include <stddef.h>
#include <stdint.h>

#include <libssh2.h>

struct om_sshkey;

/*
 * Reads and parses path.  0 and *out (free with om_sshkey_free); OM_ETYPE
 * when it is not an unencrypted OpenSSH ed25519 key; OM_ENOTFOUND, OM_EPERM,
 * OM_EIO when it cannot be read; OM_EPROTO when it is damaged; OM_ENOMEM.
 */
int om_sshkey_load(const char *path, struct om_sshkey **out);

/* The public key as the SSH wire blob (string "ssh-ed25519", string key); valid until free. */
const unsigned char *om_sshkey_blob(const struct om_sshkey *k, size_t *len);

/*
 * libssh2's sign callback (libssh2_userauth_publickey): *abstract is the
 * struct om_sshkey *.  *sig is malloc'd, libssh2 frees it.  0, or -1.
 */
int om_sshkey_sign(LIBSSH2_SESSION *session, unsigned char **sig, size_t *sig_len,
                   const unsigned char *data, size_t data_len, void **abstract);

/* Wipes the private half and frees k; NULL is fine. */
void om_sshkey_free(struct om_sshkey *k);

#endif
