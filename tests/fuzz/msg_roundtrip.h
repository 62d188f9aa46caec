/*
 * The codec's round-trip property, shared by the msg harnesses: whatever
 * the decoder accepts, the encoder takes back, and decode(encode(m))
 * encodes to the same bytes again.  Aborts (a finding) otherwise.
 */
#ifndef OM_FUZZ_MSG_ROUNDTRIP_H
#define OM_FUZZ_MSG_ROUNDTRIP_H

#include <stdlib.h>
#include <string.h>

#include "om/msg.h"

/* A canonical encoding can outgrow the input (it writes every default), so allow room. */
#define ENCODE_MAX (4 * (size_t)OM_MAX_FRAME)

/* Decode, encode, decode, encode: the two encodings must be equal. */
static inline void
round_trip(const uint8_t *msg, size_t len)
{
	struct om_msg m1, m2;
	struct om_buf b1, b2;

	if (om_msg_decode(msg, len, &m1) != 0)
		return;
	om_buf_init(&b1, ENCODE_MAX);
	om_buf_init(&b2, ENCODE_MAX);
	if (om_msg_encode(&m1, &b1) != 0)
		abort(); /* the decoder accepted what the encoder refuses */
	if (om_msg_decode(b1.data, b1.len, &m2) != 0)
		abort(); /* our own encoding does not decode */
	if (m2.type != m1.type)
		abort();
	if (om_msg_encode(&m2, &b2) != 0)
		abort();
	if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0)
		abort(); /* a field was lost or changed on the way */
	om_msg_release(&m1);
	om_msg_release(&m2);
	om_buf_release(&b1);
	om_buf_release(&b2);
}

#endif
