/*
 * om-rawpeer: a hostile peer for the integration tests.  Dials an nng REQ
 * endpoint in raw mode and fires COUNT malformed frames at it: random bytes,
 * handshake frames with garbage, data frames for random sessions, truncated
 * and oversized frames.  Exits 0 when it has sent them; whether the target
 * survived is for the test to check.
 *
 * usage: om-rawpeer URL COUNT [SEED [CLASS]]   (CLASS 0-5: only that kind of frame)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

static uint64_t rng = 88172645463325252ull;

static uint64_t
next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int
main(int argc, char **argv)
{
	nng_socket s;
	nng_dialer d;
	long count, i, sent = 0, only = -1;
	int rv;

	if (argc < 3 || (count = strtol(argv[2], NULL, 10)) <= 0 || count > 1000000) {
		fprintf(stderr, "usage: om-rawpeer URL COUNT [SEED]\n");
		return 2;
	}
	if (argc > 3)
		rng ^= strtoull(argv[3], NULL, 10) * 0x9e3779b97f4a7c15ull;
	if (argc > 4)
		only = strtol(argv[4], NULL, 10);
	if ((rv = nng_req0_open_raw(&s)) != 0 || (rv = nng_dialer_create(&d, s, argv[1])) != 0) {
		fprintf(stderr, "om-rawpeer: %s\n", nng_strerror(rv));
		return 1;
	}
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 1 << 20);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 20); /* a throttled frame is skipped */
	nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 10);
	nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 100);
	if ((rv = nng_dialer_start(d, 0)) != 0) {
		fprintf(stderr, "om-rawpeer: cannot connect to %s: %s\n", argv[1],
		        nng_strerror(rv));
		return 1;
	}
	for (i = 0; i < count; i++) {
		static uint8_t buf[1 << 16];
		size_t n, k;
		nng_msg *m;

		switch (only >= 0 ? (uint64_t)only : next() % 6) {
		case 0: /* pure noise */
			n = next() % 512;
			for (k = 0; k < n; k++)
				buf[k] = (uint8_t)next();
			break;
		case 1: /* a handshake frame with garbage inside */
			n = 3 + next() % 200;
			for (k = 0; k < n; k++)
				buf[k] = (uint8_t)next();
			buf[0] = 'H';
			buf[1] = 1;
			buf[2] = (uint8_t)(1 + next() % 2);
			break;
		case 2: /* a data frame for a session that does not exist */
			n = 17 + next() % 300;
			for (k = 0; k < n; k++)
				buf[k] = (uint8_t)next();
			buf[0] = 'D';
			break;
		case 3: /* truncated headers */
			n = next() % 17;
			for (k = 0; k < n; k++)
				buf[k] = (uint8_t)next();
			if (n > 0)
				buf[0] = "HDhR"[next() % 4];
			break;
		case 4: /* a big handshake frame, over the pre-authentication cap */
			n = sizeof(buf);
			memset(buf, 0x41, n);
			buf[0] = 'H';
			buf[1] = 1;
			buf[2] = 1;
			break;
		default: /* empty */
			n = 0;
			break;
		}
		if (nng_msg_alloc(&m, 0) != 0)
			return 1;
		/* Raw REQ: we write the request id header ourselves. */
		nng_msg_header_append_u32(m, 0x80000000u | (uint32_t)i);
		nng_msg_append(m, buf, n);
		if (nng_sendmsg(s, m, 0) != 0)
			nng_msg_free(m);
		else
			sent++;
	}
	nng_msleep(200);
	/* No nng_close: on nng 1.5.2 closing a raw REQ socket whose pipes the
	 * peer closed can hang; the process exit releases everything. */
	printf("om-rawpeer: sent %ld of %ld frames to %s\n", sent, count, argv[1]);
	return 0;
}
