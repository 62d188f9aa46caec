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

#include "msg_roundtrip.h"
#include "om/base.h"
#include "om/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size <= OM_MAX_FRAME)
		round_trip(data, size);
	return 0;
}
