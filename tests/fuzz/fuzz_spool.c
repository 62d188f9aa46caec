/*
 * Fuzzes the worker's spool reader (worker/spool.c): a segment file as it
 * may be found on disk after a crash, a full disk or bit rot.
 *
 * Input: the bytes of the one segment file of a spool directory.  When the
 * input is at least 37 bytes and starts with "H", bytes 1..36 are written
 * as the checkpoint file (head) and the rest is the segment.
 *
 * Beyond not crashing: opening always succeeds; peeking every record gives
 * as many as stats.records, each within OM_SPOOL_MAX_RECORD; a record
 * appended afterwards comes back last; consuming everything leaves an
 * empty spool, and a reopen finds nothing left to deliver.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "om/base.h"
#include "om/err.h"
#include "spool.h"

#define CHECKPOINT_SIZE 36

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char root[64];

/* Removes every file of the spool directory and the directory. */
static void
clean(const char *dir)
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

static void
at_exit(void)
{
	char dir[128];

	snprintf(dir, sizeof(dir), "%s/spool", root);
	clean(dir);
	rmdir(root);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* tmpfs when there is one: every input fsyncs a few times */
	snprintf(root, sizeof(root), "/dev/shm/fuzz_spool.XXXXXX");
	if (mkdtemp(root) == NULL) {
		snprintf(root, sizeof(root), "/tmp/fuzz_spool.XXXXXX");
		if (mkdtemp(root) == NULL)
			abort();
	}
	atexit(at_exit);
	/* Torn tails and corrupt records are the point: no warning per input. */
	om_log_setup("fuzz_spool", OM_LOG_ERROR);
	return 0;
}

static void
put(const char *dir, const char *name, const uint8_t *data, size_t n)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
		abort();
	if (n > 0 && write(fd, data, n) != (ssize_t)n)
		abort();
	close(fd);
}

struct walk {
	size_t n;
	size_t last_len;
	uint8_t last[8];
};

static int
count(void *arg, const uint8_t *data, size_t len)
{
	struct walk *w = arg;

	if (data == NULL || len > OM_SPOOL_MAX_RECORD)
		abort();
	w->n++;
	w->last_len = len;
	memcpy(w->last, data, len < sizeof(w->last) ? len : sizeof(w->last));
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t marker[] = "fuzz-end";
	struct om_spool *s;
	struct om_spool_stats st;
	struct walk w = {0};
	char dir[128];
	int rv;

	snprintf(dir, sizeof(dir), "%s/spool", root);
	clean(dir);
	if (mkdir(dir, 0700) != 0)
		abort();
	if (size > CHECKPOINT_SIZE && data[0] == 'H') {
		put(dir, "head", data + 1, CHECKPOINT_SIZE);
		data += 1 + CHECKPOINT_SIZE;
		size -= 1 + CHECKPOINT_SIZE;
	}
	put(dir, "seg-0000000000000001.spool", data, size);

	if ((rv = om_spool_open(dir, 1 << 30, 0, &s)) != 0)
		abort();
	om_spool_stats(s, &st);
	if (st.bytes > size || st.records > size / OM_SPOOL_HEADER)
		abort();
	if (om_spool_peek(s, SIZE_MAX, SIZE_MAX, count, &w) != (int)st.records || w.n != st.records)
		abort();

	/* what is appended now comes back after everything found */
	if (om_spool_append(s, marker, sizeof(marker) - 1) != 0)
		abort();
	memset(&w, 0, sizeof(w));
	if (om_spool_peek(s, SIZE_MAX, SIZE_MAX, count, &w) != (int)st.records + 1 ||
	    w.last_len != sizeof(marker) - 1 || memcmp(w.last, marker, sizeof(marker) - 1) != 0)
		abort();
	if (om_spool_consume(s, st.records + 1) != 0)
		abort();
	om_spool_stats(s, &st);
	if (st.records != 0 || st.bytes != 0)
		abort();
	if (om_spool_close(s) != 0)
		abort();

	/* consumed is consumed, after a reopen too */
	if (om_spool_open(dir, 1 << 30, 0, &s) != 0)
		abort();
	om_spool_stats(s, &st);
	if (st.records != 0)
		abort();
	om_spool_close(s);
	return 0;
}
