/*
 * Error codes shared by libomproto, the daemons, omctl and plugins.
 *
 * Every function that can fail returns an int: 0 (or a byte count) on
 * success, a negative OM_E* code on failure.  Codes are append-only: never
 * renumber or reuse one, plugins and peers depend on them.
 */
#ifndef OM_ERR_H
#define OM_ERR_H

#define OM_ERRNO_MAP(XX)                                                                           \
	XX(EINVAL, -1, "invalid argument")                                                         \
	XX(ENOMEM, -2, "out of memory")                                                            \
	XX(EAGAIN, -3, "incomplete, need more data")                                               \
	XX(EPROTO, -4, "malformed message")                                                        \
	XX(EMSGSIZE, -5, "message too large")                                                      \
	XX(ECRYPTO, -6, "message authentication failed")                                           \
	XX(EREPLAY, -7, "replayed or stale record")                                                \
	XX(ETIMEDOUT, -8, "timed out")                                                             \
	XX(ECLOSED, -9, "connection closed")                                                       \
	XX(EAUTH, -10, "authentication refused")                                                   \
	XX(ENOTFOUND, -11, "not found")                                                            \
	XX(EIO, -12, "input/output error")                                                         \
	XX(EDB, -13, "database error")                                                             \
	XX(EDEPTH, -14, "nesting too deep")                                                        \
	XX(ETYPE, -15, "wrong type")                                                               \
	XX(ESYS, -16, "system call failed")                                                        \
	XX(EEXIST, -17, "already exists")                                                          \
	XX(ETRANSPORT, -18, "transport error")                                                     \
	XX(ESESSION, -19, "unknown or expired session")                                            \
	XX(EPERM, -20, "operation not permitted")                                                  \
	XX(ERANGE, -21, "value out of range")                                                      \
	XX(EBUSY, -22, "resource busy, try again later")                                           \
	XX(ECANCELED, -23, "cancelled")

enum om_err {
	OM_OK = 0,
#define OM_ERR_ENUM(name, val, text) OM_##name = (val),
	OM_ERRNO_MAP(OM_ERR_ENUM)
#undef OM_ERR_ENUM
};

/* Returns a static string; never NULL, also for unknown codes. */
const char *om_strerror(int err);

#endif
