/*
 * Fuzzes each message type's field decoder (proto/msg.c) on its own.
 *
 * fuzz_msg feeds whole messages, so most mutations break the map header or
 * the "t" entry and never reach a type's schema.  Here the input only
 * supplies the fields:
 *
 *   byte 0     the type: taken as is when it is a type of enum om_msg_type,
 *              else types[byte % NTYPES] (so every type is one byte away)
 *   byte 1     n, the number of key/value pairs that follow
 *   the rest   n key/value pairs (or whatever the mutator made of them)
 *
 * and the message decoded is {"t": type, <the rest>} under a map header of
 * n + 1 entries.  A type the decoder does not know yet simply fails.  The
 * checks are fuzz_msg's: whatever decodes must re-encode, decode again and
 * re-encode to the same bytes.
 *
 * Seeds: tests/data/fuzz/msg_typed/ (written by tests/data/fuzz/gen_msg_seeds.c
 * from the msg seeds: the type byte, the pair count, the pairs without "t").
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "om/base.h"
#include "msg_roundtrip.h"
#include "om/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every value of enum om_msg_type but OM_MSG_NONE; all below 128 (a positive fixint). */
static const uint8_t types[] = {
        OM_MSG_HELLO,        OM_MSG_WELCOME,     OM_MSG_HEARTBEAT,    OM_MSG_POLL,
        OM_MSG_TASK,         OM_MSG_NOTASK,      OM_MSG_REPORT,       OM_MSG_ACK,
        OM_MSG_AUTH,         OM_MSG_AUTH_OK,     OM_MSG_SUBMIT,       OM_MSG_SUBMITTED,
        OM_MSG_FOLLOW,       OM_MSG_EVENTS,      OM_MSG_HOSTS_LIST,   OM_MSG_HOSTS,
        OM_MSG_HOSTS_ADD,    OM_MSG_DONE,        OM_MSG_WORKERS_LIST, OM_MSG_WORKERS,
        OM_MSG_ERROR,        OM_MSG_KEYS_LIST,   OM_MSG_KEY_SET,      OM_MSG_ENROLL_CREATE,
        OM_MSG_USERS_LIST,   OM_MSG_USER_ADD,    OM_MSG_USER_PASSWD,  OM_MSG_USER_DISABLE,
        OM_MSG_TOKEN_CREATE, OM_MSG_TOKENS_LIST, OM_MSG_TOKEN_REVOKE, OM_MSG_AUDIT_LIST,
        OM_MSG_AUDIT_VERIFY, OM_MSG_SECRET,      OM_MSG_TABLE,        OM_MSG_CANCEL,
        OM_MSG_MODULES,      OM_MSG_JOB_CANCEL,  OM_MSG_MODULES_LIST, OM_MSG_MODULE_SHOW,
        OM_MSG_HOST_SHOW,    OM_MSG_JOB_SHOW,    OM_MSG_JOB_HOSTS,    OM_MSG_JOBS_LIST,
        OM_MSG_JOB_OUTPUT,
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

_Static_assert(OM_MSG_TYPE_MAX_ < 128, "types are written as one positive fixint byte");

static uint8_t
pick_type(uint8_t b)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (types[i] == b)
			return b;
	return types[b % NTYPES];
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t hdr[6];
	size_t hlen = 0, rest, len;
	uint32_t entries;
	uint8_t *msg;

	if (size < 2 || size > OM_MAX_FRAME)
		return 0;
	entries = (uint32_t)data[1] + 1;
	if (entries <= 15) {
		hdr[hlen++] = (uint8_t)(0x80 | entries); /* fixmap */
	} else {
		hdr[hlen++] = 0xde; /* map 16 */
		hdr[hlen++] = (uint8_t)(entries >> 8);
		hdr[hlen++] = (uint8_t)entries;
	}
	hdr[hlen++] = 0xa1; /* "t" */
	hdr[hlen++] = 't';
	hdr[hlen++] = pick_type(data[0]);

	/* A block of exactly the message's size, so ASan sees any read past its end. */
	rest = size - 2;
	len = hlen + rest;
	if ((msg = malloc(len)) == NULL)
		abort();
	memcpy(msg, hdr, hlen);
	if (rest > 0)
		memcpy(msg + hlen, data + 2, rest);
	round_trip(msg, len);
	free(msg);
	return 0;
}
