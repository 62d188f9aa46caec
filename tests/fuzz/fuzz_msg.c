/*
 * Fuzzes the schema-checked message decoder (proto/msg.c).
 *
 * Input: one message, as it would arrive inside a channel record.  Beyond
 * not crashing or leaking, whatever decodes must encode again, and the
 * encoding must be canonical: encode(decode(encode(decode(x)))) equals
 * encode(decode(x)) byte for byte.  That holds only if the encoder accepts
 * everything the decoder accepts and every decoded field survives.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "om/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A canonical encoding can outgrow the input (it writes every default), so allow room. */
#define ENCODE_MAX (4 * (size_t)OM_MAX_FRAME)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct om_msg m1, m2;
	struct om_buf b1, b2;

	if (size > OM_MAX_FRAME)
		return 0;
	if (om_msg_decode(data, size, &m1) != 0)
		return 0;
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
	return 0;
}
