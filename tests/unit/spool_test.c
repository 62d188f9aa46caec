/*
 * Tests for the worker's spool (worker/spool.c): records come back in order
 * until consumed, across reopens; segments rotate and go away once
 * consumed; max_bytes bounds the spool; a torn tail is cut, a corrupt
 * record in the middle is skipped and counted; a failed write leaves the
 * spool consistent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "om/base.h"
#include "om/err.h"
#include "om/msg.h"
#include "spool.h"

#define SEG1 "seg-0000000000000001.spool"

struct fixture {
	char root[64]; /* a fresh temporary directory */
	char dir[96];  /* root/spool: the spool, created by om_spool_open */
};

/* What a peek saw: up to 64 records. */
struct seen {
	size_t n;
	size_t len[64];
	uint8_t data[64][256];
	size_t stop_at; /* 0: take everything; else return 1 at this record (1-based) */
};

static int
collect(void *arg, const uint8_t *data, size_t len)
{
	struct seen *s = arg;

	assert_non_null(data);
	if (s->stop_at != 0 && s->n + 1 == s->stop_at)
		return 1;
	assert_true(s->n < 64);
	s->len[s->n] = len;
	memcpy(s->data[s->n], data, len < 256 ? len : 256);
	s->n++;
	return 0;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/spool_test.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->dir, sizeof(f->dir), "%s/spool", f->root);
	*state = f;
	return 0;
}

static void
rm_flat(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
	rmdir(dir);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	rm_flat(f->dir);
	rm_flat(f->root);
	free(f);
	return 0;
}

static int
count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, "seg-", 4) == 0;
	closedir(d);
	return n;
}

static off_t
file_size(const char *dir, const char *name)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* Writes n bytes at off of dir/name (off -1: at the end). */
static void
patch(const char *dir, const char *name, off_t off, const void *data, size_t n)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_true((fd = open(path, O_WRONLY)) >= 0);
	if (off < 0)
		off = lseek(fd, 0, SEEK_END);
	assert_int_equal(pwrite(fd, data, n, off), (ssize_t)n);
	close(fd);
}

static void
xor_byte(const char *dir, const char *name, off_t off)
{
	char path[512];
	uint8_t b;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_true((fd = open(path, O_RDWR)) >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void
append_str(struct om_spool *s, const char *text)
{
	assert_int_equal(om_spool_append(s, text, strlen(text)), 0);
}

static void
expect_record(const struct seen *seen, size_t i, const char *text)
{
	assert_true(i < seen->n);
	assert_int_equal(seen->len[i], strlen(text));
	assert_memory_equal(seen->data[i], text, strlen(text));
}

static struct om_spool_stats
stats(const struct om_spool *s)
{
	struct om_spool_stats st;

	om_spool_stats(s, &st);
	return st;
}

static void
test_crc32c(void **state)
{
	(void)state;
	assert_int_equal(om_spool_crc32c(0, "123456789", 9), 0xe3069283u);
	assert_int_equal(om_spool_crc32c(0, "", 0), 0);
	/* continuing gives the same as one call */
	assert_int_equal(om_spool_crc32c(om_spool_crc32c(0, "12345", 5), "6789", 4), 0xe3069283u);
}

static void
test_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};
	struct stat st;

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	/* created 0700 */
	assert_int_equal(stat(f->dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stats(s).records, 0);
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 0);

	append_str(s, "alpha");
	append_str(s, "bravo");
	append_str(s, "");
	append_str(s, "delta");
	assert_int_equal(stats(s).records, 4);
	assert_int_equal(stats(s).bytes, 4 * OM_SPOOL_HEADER + 15);
	assert_int_equal(stats(s).unsynced, 4 * OM_SPOOL_HEADER + 15);
	assert_int_equal(om_spool_sync(s), 0);
	assert_int_equal(stats(s).unsynced, 0);

	/* peeking consumes nothing */
	for (int round = 0; round < 2; round++) {
		memset(&seen, 0, sizeof(seen));
		assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 4);
		expect_record(&seen, 0, "alpha");
		expect_record(&seen, 1, "bravo");
		expect_record(&seen, 2, "");
		expect_record(&seen, 3, "delta");
	}
	assert_int_equal(om_spool_consume(s, 2), 0);
	assert_int_equal(stats(s).records, 2);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 2);
	expect_record(&seen, 0, "");
	expect_record(&seen, 1, "delta");
	/* more than there is */
	assert_int_equal(om_spool_consume(s, 3), OM_EINVAL);
	assert_int_equal(om_spool_consume(s, 0), 0);
	assert_int_equal(om_spool_consume(s, 2), 0);
	assert_int_equal(stats(s).records, 0);
	assert_int_equal(stats(s).bytes, 0);
	/* the fully consumed segment is gone */
	assert_int_equal(count_segments(f->dir), 0);
	append_str(s, "echo");
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 1);
	expect_record(&seen, 0, "echo");
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_peek_limits(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "0123456789");
	append_str(s, "abcdefghij");
	append_str(s, "klmnopqrst");
	/* by count */
	assert_int_equal(om_spool_peek(s, 2, 1 << 20, collect, &seen), 2);
	assert_int_equal(seen.n, 2);
	/* by bytes: the first is always offered, even past the limit */
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 5, collect, &seen), 1);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 25, collect, &seen), 2);
	/* the callback stops before a record */
	memset(&seen, 0, sizeof(seen));
	seen.stop_at = 3;
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 2);
	/* consuming fewer than peeked, then the rest without a peek */
	assert_int_equal(om_spool_consume(s, 1), 0);
	assert_int_equal(om_spool_consume(s, 1), 0);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 1);
	expect_record(&seen, 0, "klmnopqrst");
	assert_int_equal(om_spool_close(s), 0);
}

static int
fail_cb(void *arg, const uint8_t *data, size_t len)
{
	(void)arg;
	(void)data;
	(void)len;
	return OM_ECANCELED;
}

static void
test_peek_error(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "x");
	assert_int_equal(om_spool_peek(s, 10, 100, fail_cb, NULL), OM_ECANCELED);
	assert_int_equal(stats(s).records, 1);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_reopen_keeps_order(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};
	char text[16];

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	for (int i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "record %d", i);
		append_str(s, text);
	}
	assert_int_equal(om_spool_peek(s, 2, 1 << 20, collect, &seen), 2);
	assert_int_equal(om_spool_consume(s, 2), 0);
	assert_int_equal(om_spool_close(s), 0);

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 3);
	assert_int_equal(stats(s).corrupt, 0);
	assert_int_equal(stats(s).truncated, 0);
	/* new records go after the old ones (in a new segment) */
	append_str(s, "record 5");
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 4);
	expect_record(&seen, 0, "record 2");
	expect_record(&seen, 1, "record 3");
	expect_record(&seen, 2, "record 4");
	expect_record(&seen, 3, "record 5");
	assert_int_equal(count_segments(f->dir), 2);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_reopen_after_consume(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "one");
	append_str(s, "two");
	append_str(s, "three");
	assert_int_equal(om_spool_consume(s, 2), 0); /* without a peek: walks */
	assert_int_equal(om_spool_close(s), 0);

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 1);
	expect_record(&seen, 0, "three");
	assert_int_equal(om_spool_consume(s, 1), 0);
	assert_int_equal(om_spool_close(s), 0);

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 0);
	assert_int_equal(stats(s).bytes, 0);
	assert_int_equal(count_segments(f->dir), 0);
	append_str(s, "four");
	assert_int_equal(om_spool_close(s), 0);

	/* the checkpoint points past the old segments: only the new record comes back */
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 1);
	expect_record(&seen, 0, "four");
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_rotation(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};
	uint8_t rec[50];

	/* 100-byte segments: one 70-byte record each */
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 100, &s), 0);
	for (int i = 0; i < 10; i++) {
		memset(rec, 'a' + i, sizeof(rec));
		assert_int_equal(om_spool_append(s, rec, sizeof(rec)), 0);
	}
	assert_int_equal(stats(s).segments, 10);
	assert_int_equal(count_segments(f->dir), 10);
	/* a record larger than a segment gets one of its own */
	uint8_t big[300];
	memset(big, 'Z', sizeof(big));
	assert_int_equal(om_spool_append(s, big, sizeof(big)), 0);
	assert_int_equal(count_segments(f->dir), 11);

	assert_int_equal(om_spool_peek(s, 5, 1 << 20, collect, &seen), 5);
	assert_int_equal(om_spool_consume(s, 5), 0);
	assert_int_equal(count_segments(f->dir), 6);
	assert_int_equal(om_spool_close(s), 0);

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 100, &s), 0);
	assert_int_equal(stats(s).records, 6);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 6);
	assert_int_equal(seen.len[0], 50);
	assert_int_equal(seen.data[0][0], 'f');
	assert_int_equal(seen.len[5], 300);
	assert_int_equal(om_spool_consume(s, 6), 0);
	assert_int_equal(count_segments(f->dir), 0);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_max_bytes(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	uint8_t rec[50] = {0};
	uint8_t *huge;

	/* room for two 70-byte records */
	assert_int_equal(om_spool_open(f->dir, 200, 0, &s), 0);
	assert_int_equal(om_spool_append(s, rec, sizeof(rec)), 0);
	assert_int_equal(om_spool_append(s, rec, sizeof(rec)), 0);
	assert_int_equal(om_spool_append(s, rec, sizeof(rec)), OM_EBUSY);
	assert_true(strstr(om_spool_errstr(s), "full") != NULL);
	assert_int_equal(stats(s).records, 2);
	assert_int_equal(stats(s).bytes, 140);
	/* a small one still fits */
	assert_int_equal(om_spool_append(s, rec, 40), 0);
	assert_int_equal(om_spool_append(s, rec, 0), OM_EBUSY);
	/* consuming makes room */
	assert_int_equal(om_spool_consume(s, 1), 0);
	assert_int_equal(om_spool_append(s, rec, sizeof(rec)), 0);
	assert_int_equal(stats(s).records, 3);

	/* the record size bound comes first */
	huge = malloc(OM_SPOOL_MAX_RECORD + 1);
	assert_non_null(huge);
	assert_int_equal(om_spool_append(s, huge, OM_SPOOL_MAX_RECORD + 1), OM_EMSGSIZE);
	free(huge);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_empty_dir(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};

	assert_int_equal(mkdir(f->dir, 0700), 0);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 0);
	assert_int_equal(stats(s).segments, 0);
	assert_int_equal(om_spool_peek(s, 100, 100, collect, &seen), 0);
	assert_int_equal(om_spool_consume(s, 1), OM_EINVAL);
	assert_int_equal(om_spool_sync(s), 0);
	assert_string_equal(om_spool_dir(s), f->dir);
	assert_int_equal(om_spool_close(s), 0);
	/* close on NULL */
	assert_int_equal(om_spool_close(NULL), 0);
	/* no directory name */
	assert_int_equal(om_spool_open("", 100, 0, &s), OM_EINVAL);
	assert_null(s);
}

static void
test_zero_length(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(om_spool_append(s, NULL, 0), 0);
	assert_int_equal(om_spool_append(s, "", 0), 0);
	assert_int_equal(stats(s).bytes, 2 * OM_SPOOL_HEADER);
	assert_int_equal(om_spool_close(s), 0);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(om_spool_peek(s, 100, 0, collect, &seen), 2);
	assert_int_equal(seen.len[0], 0);
	assert_int_equal(seen.len[1], 0);
	assert_int_equal(om_spool_consume(s, 2), 0);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_torn_tail(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};
	uint8_t partial[OM_SPOOL_HEADER + 3];
	off_t good;

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "first");
	append_str(s, "second");
	append_str(s, "third record, longer");
	assert_int_equal(om_spool_close(s), 0);
	good = file_size(f->dir, SEG1);

	/* a record cut short: a copy of the first header, then 3 of its 20 payload bytes */
	{
		char path[512];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", f->dir, SEG1);
		assert_true((fd = open(path, O_RDONLY)) >= 0);
		/* the third record's header announces 20 bytes */
		assert_int_equal(pread(fd, partial, OM_SPOOL_HEADER,
		                       2 * OM_SPOOL_HEADER + strlen("first") + strlen("second")),
		                 OM_SPOOL_HEADER);
		close(fd);
	}
	memcpy(partial + OM_SPOOL_HEADER, "thi", 3);
	patch(f->dir, SEG1, -1, partial, sizeof(partial));
	assert_int_equal(file_size(f->dir, SEG1), good + (off_t)sizeof(partial));

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 3);
	assert_int_equal(stats(s).truncated, sizeof(partial));
	assert_int_equal(stats(s).corrupt, 0);
	assert_int_equal(file_size(f->dir, SEG1), good);
	append_str(s, "fourth");
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 4);
	expect_record(&seen, 2, "third record, longer");
	expect_record(&seen, 3, "fourth");
	assert_int_equal(om_spool_close(s), 0);

	/* a few bytes, less than a header, in a segment that is no longer the newest: skipped */
	patch(f->dir, SEG1, -1, "OMS", 3);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 4);
	assert_int_equal(stats(s).truncated, 0); /* SEG1 is no longer the newest */
	assert_int_equal(stats(s).corrupt, 1);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_torn_tail_newest(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	uint8_t zeros[100] = {0};

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "only");
	assert_int_equal(om_spool_close(s), 0);
	/* a crash after the size grew but before the data landed: zeros */
	patch(f->dir, SEG1, -1, zeros, sizeof(zeros));
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 1);
	assert_int_equal(stats(s).truncated, sizeof(zeros));
	assert_int_equal(file_size(f->dir, SEG1), OM_SPOOL_HEADER + 4);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_corrupt_middle(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};
	off_t second = OM_SPOOL_HEADER + 5; /* offset of the second record */

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "aaaaa");
	append_str(s, "bbbbb");
	append_str(s, "ccccc");
	append_str(s, "ddddd");
	assert_int_equal(om_spool_close(s), 0);

	/* a flipped payload byte: the header still gives the length, skip exactly it */
	xor_byte(f->dir, SEG1, second + OM_SPOOL_HEADER + 2);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 3);
	assert_int_equal(stats(s).corrupt, 1);
	assert_int_equal(stats(s).truncated, 0);
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 3);
	expect_record(&seen, 0, "aaaaa");
	expect_record(&seen, 1, "ccccc");
	expect_record(&seen, 2, "ddddd");
	assert_int_equal(om_spool_close(s), 0);
	xor_byte(f->dir, SEG1, second + OM_SPOOL_HEADER + 2); /* repaired */

	/* a flipped magic byte: no header there, resynchronise on the next one */
	xor_byte(f->dir, SEG1, second + OM_SPOOL_HEADER + 5 + 1); /* the third record's */
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 3);
	assert_int_equal(stats(s).corrupt, 1);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 3);
	expect_record(&seen, 0, "aaaaa");
	expect_record(&seen, 1, "bbbbb");
	expect_record(&seen, 2, "ddddd");
	/* consuming walks over the corrupt bytes the same way */
	assert_int_equal(om_spool_consume(s, 2), 0);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 1);
	expect_record(&seen, 0, "ddddd");
	assert_int_equal(om_spool_close(s), 0);

	/* a flipped length byte: the header checksum catches it */
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "eeeee");
	append_str(s, "fffff");
	assert_int_equal(om_spool_close(s), 0);
	xor_byte(f->dir, "seg-0000000000000002.spool", 8);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 2); /* ddddd, fffff */
	/* the length flip, and the magic flip again: the head is still before it */
	assert_int_equal(stats(s).corrupt, 2);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 2);
	expect_record(&seen, 0, "ddddd");
	expect_record(&seen, 1, "fffff");
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_corrupt_after_open(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "aaaaa");
	append_str(s, "bbbbb");
	append_str(s, "ccccc");
	assert_int_equal(om_spool_sync(s), 0);
	/* damaged under the open spool: skipped, counted, and the counts follow */
	xor_byte(f->dir, SEG1, OM_SPOOL_HEADER + 5 + OM_SPOOL_HEADER);
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 2);
	expect_record(&seen, 0, "aaaaa");
	expect_record(&seen, 1, "ccccc");
	assert_int_equal(stats(s).records, 2);
	assert_int_equal(stats(s).corrupt, 1);
	assert_int_equal(om_spool_consume(s, 2), 0);
	assert_int_equal(stats(s).records, 0);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_bad_checkpoint(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "one");
	append_str(s, "two");
	assert_int_equal(om_spool_consume(s, 1), 0);
	assert_int_equal(om_spool_close(s), 0);
	/* a damaged checkpoint: everything from the oldest segment again (at least once) */
	xor_byte(f->dir, "head", 20);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).records, 2);
	assert_int_equal(om_spool_close(s), 0);
}

static void
test_locked(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s, *t;

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &t), OM_EBUSY);
	assert_null(t);
	assert_int_equal(om_spool_close(s), 0);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &t), 0);
	assert_int_equal(om_spool_close(t), 0);
}

/* A write that fails half way (a file size limit): nothing half-written stays. */
static void
test_write_failure(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};
	struct rlimit old, lim;
	uint8_t rec[100];
	int rv = 0, ok = 0;

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 250; /* two records and a half */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	for (int i = 0; i < 5 && rv == 0; i++) {
		memset(rec, '0' + i, sizeof(rec));
		if ((rv = om_spool_append(s, rec, sizeof(rec))) == 0)
			ok++;
	}
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(rv, OM_EIO);
	assert_int_equal(ok, 2);
	assert_true(strstr(om_spool_errstr(s), "write") != NULL);
	assert_int_equal(stats(s).records, 2);
	assert_int_equal(stats(s).bytes, 2 * (OM_SPOOL_HEADER + 100));
	assert_int_equal(file_size(f->dir, SEG1), 2 * (OM_SPOOL_HEADER + 100));
	/* the next append goes to a new segment */
	memset(rec, 'x', sizeof(rec));
	assert_int_equal(om_spool_append(s, rec, sizeof(rec)), 0);
	assert_int_equal(count_segments(f->dir), 2);
	assert_int_equal(om_spool_close(s), 0);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).corrupt, 0);
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 3);
	assert_int_equal(seen.data[0][0], '0');
	assert_int_equal(seen.data[1][0], '1');
	assert_int_equal(seen.data[2][0], 'x');
	assert_int_equal(om_spool_close(s), 0);
}

/* Files that are not segments are left alone; a directory that is a file is refused. */
static void
test_foreign_files(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	char path[256];
	int fd;

	assert_int_equal(mkdir(f->dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/seg-12.spool", f->dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) >= 0);
	assert_int_equal(write(fd, "junk", 4), 4);
	close(fd);
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(stats(s).segments, 0);
	assert_int_equal(om_spool_close(s), 0);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);

	snprintf(path, sizeof(path), "%s/file", f->dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) >= 0);
	close(fd);
	assert_int_equal(om_spool_open(path, 1 << 20, 0, &s), OM_ESYS);
	unlink(path);
}

/* What om-worker keeps in a record: one REPORT with one chunk or one result. */
static void
append_report(struct om_spool *s, const struct om_chunk *c, const struct om_result *r)
{
	struct om_msg m = {.type = OM_MSG_REPORT};
	struct om_buf b;

	m.u.report.chunks = (struct om_chunk *)c;
	m.u.report.nchunks = c != NULL;
	m.u.report.results = (struct om_result *)r;
	m.u.report.nresults = r != NULL;
	om_buf_init(&b, OM_MAX_FRAME);
	assert_int_equal(om_msg_encode(&m, &b), 0);
	assert_int_equal(om_spool_append(s, b.data, b.len), 0);
	om_buf_release(&b);
}

struct reports {
	struct om_msg m[4];
	size_t n;
};

static int
decode_report(void *arg, const uint8_t *data, size_t len)
{
	struct reports *r = arg;

	assert_true(r->n < 4);
	assert_int_equal(om_msg_decode(data, len, &r->m[r->n]), 0);
	assert_int_equal(r->m[r->n].type, OM_MSG_REPORT);
	r->n++;
	return 0;
}

static void
test_report_records(void **state)
{
	struct fixture *f = *state;
	uint8_t out[] = {'o', 'k', '\n', 0x00, 0xff};
	struct om_chunk c = {.task_id = 9,
	                     .host = 1,
	                     .stream = OM_STREAM_STDERR,
	                     .seq = 7,
	                     .data = out,
	                     .len = sizeof(out)};
	struct om_result r = {.task_id = 9,
	                      .host = 1,
	                      .state = OM_HS_FAILED,
	                      .exit_code = 255,
	                      .reason = "exit status 255",
	                      .duration_ms = 1500,
	                      .changed = true,
	                      .data = "{\"changed\":true}"};
	struct om_spool *s;
	struct reports got = {0};

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_report(s, &c, NULL);
	append_report(s, NULL, &r);
	assert_int_equal(om_spool_close(s), 0);

	/* a new process finds them in order, byte for byte */
	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	assert_int_equal(om_spool_peek(s, OM_MAX_ITEMS, 4 << 20, decode_report, &got), 2);
	assert_int_equal(got.m[0].u.report.nchunks, 1);
	assert_int_equal(got.m[0].u.report.nresults, 0);
	assert_int_equal(got.m[0].u.report.chunks[0].task_id, 9);
	assert_int_equal(got.m[0].u.report.chunks[0].seq, 7);
	assert_int_equal(got.m[0].u.report.chunks[0].stream, OM_STREAM_STDERR);
	assert_int_equal(got.m[0].u.report.chunks[0].len, sizeof(out));
	assert_memory_equal(got.m[0].u.report.chunks[0].data, out, sizeof(out));
	assert_int_equal(got.m[1].u.report.nresults, 1);
	assert_int_equal(got.m[1].u.report.results[0].state, OM_HS_FAILED);
	assert_int_equal(got.m[1].u.report.results[0].exit_code, 255);
	assert_string_equal(got.m[1].u.report.results[0].reason, "exit status 255");
	assert_string_equal(got.m[1].u.report.results[0].data, "{\"changed\":true}");
	assert_true(got.m[1].u.report.results[0].changed);
	for (size_t i = 0; i < got.n; i++)
		om_msg_release(&got.m[i]);
	assert_int_equal(om_spool_consume(s, 2), 0);
	assert_int_equal(om_spool_close(s), 0);
}

/* The newest record damaged under the open spool: the peek notices and the counts follow. */
static void
test_corrupt_last_after_open(void **state)
{
	struct fixture *f = *state;
	struct om_spool *s;
	struct seen seen = {0};

	assert_int_equal(om_spool_open(f->dir, 1 << 20, 0, &s), 0);
	append_str(s, "aaaaa");
	append_str(s, "bbbbb");
	assert_int_equal(om_spool_sync(s), 0);
	xor_byte(f->dir, SEG1, 2 * OM_SPOOL_HEADER + 5 + 4);
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 1);
	expect_record(&seen, 0, "aaaaa");
	assert_int_equal(stats(s).records, 1);
	assert_int_equal(stats(s).corrupt, 1);
	/* consuming the rest without a peek, then appending: all consistent */
	assert_int_equal(om_spool_consume(s, 1), 0);
	assert_int_equal(om_spool_consume(s, 1), OM_EINVAL);
	append_str(s, "ccccc");
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(om_spool_peek(s, 100, 1 << 20, collect, &seen), 1);
	expect_record(&seen, 0, "ccccc");
	assert_int_equal(om_spool_close(s), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_crc32c),
	        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_peek_limits, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_peek_error, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reopen_keeps_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reopen_after_consume, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_max_bytes, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_empty_dir, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_zero_length, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_torn_tail_newest, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_middle, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_after_open, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_bad_checkpoint, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_foreign_files, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_report_records, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_last_after_open, setup, teardown),
	};

	om_log_setup("spool_test", OM_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
