/*
 * The worker's spool: segment files of checksummed records plus a consume
 * checkpoint (format and rules in spool.h).
 *
 * In memory the spool keeps only its segment list (sequence, size, records
 * left), the head (offset of the oldest unconsumed byte in the first
 * segment) and, after a peek, where each record peeked ends, so that
 * consuming them does not read them again.  Every read validates again:
 * the same walk (seg_next) serves open, peek and consume, so they agree on
 * which records exist.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "om/base.h"
#include "spool.h"

#define REC_MAGIC      "OMSR"
#define REC_VERSION    1
#define HDR            OM_SPOOL_HEADER
#define HEAD_MAGIC     "OMSPHEAD"
#define HEAD_VERSION   1
#define HEAD_SIZE      36
#define HEAD_NAME      "head"
#define HEAD_TMP       "head.tmp"
#define LOCK_NAME      "lock"
#define SEG_NAME_LEN   26                  /* "seg-" + 16 digits + ".spool" */
#define SEQ_MAX        9999999999999999ull /* 16 digits */
#define SCAN_BLOCK     65536               /* bytes read at once looking for a header */
#define PEEK_CACHE_MAX 65536               /* record ends remembered by a peek */

struct seg {
	uint64_t seq;
	uint64_t size;    /* bytes in the file */
	uint64_t records; /* valid records not consumed yet */
};

/* Where a peeked record ends. */
struct pos {
	uint64_t seq;
	uint64_t off;
};

struct om_spool {
	char *dir;
	int dirfd;
	int lockfd;
	uint64_t max_bytes;
	uint64_t seg_bytes;
	struct seg *segs; /* ascending seq; segs[0] holds the head */
	size_t nsegs, segcap;
	uint64_t head_off; /* in segs[0]: everything before it is consumed */
	uint64_t next_seq; /* of the next segment created */
	int wfd;           /* appends go to segs[nsegs - 1]; -1: the next append creates one */
	uint64_t records, bytes, corrupt, truncated, unsynced;
	bool dir_dirty; /* a segment was created since the directory was fsynced */
	int rfd;        /* read cache: segment rseq */
	uint64_t rseq;
	uint8_t *buf; /* payload of the record seg_next found last */
	size_t bufcap;
	uint8_t *scan;      /* SCAN_BLOCK bytes for seg_next's resync */
	struct pos *peeked; /* ends of the records of the last peek, in order */
	size_t npeeked, peekcap;
	char err[512];
};

/* ---- CRC-32C (Castagnoli), slicing by 8 ---- */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			crc_tab[k][i] =
			        (crc_tab[k - 1][i] >> 8) ^ crc_tab[0][crc_tab[k - 1][i] & 0xff];
}

uint32_t
om_spool_crc32c(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (n >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		                     (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
		              (uint32_t)p[7] << 24;
		crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		      crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^
		      crc_tab[2][(hi >> 8) & 0xff] ^ crc_tab[1][(hi >> 16) & 0xff] ^
		      crc_tab[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n-- > 0)
		crc = (crc >> 8) ^ crc_tab[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

/* ---- small helpers ---- */

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void
seg_name(uint64_t seq, char name[SEG_NAME_LEN + 1])
{
	snprintf(name, SEG_NAME_LEN + 1, "seg-%016llu.spool", (unsigned long long)seq);
}

/* A segment file name, exactly; its number in *seq. */
static bool
seg_parse(const char *name, uint64_t *seq)
{
	uint64_t v = 0;

	if (strlen(name) != SEG_NAME_LEN || strncmp(name, "seg-", 4) != 0 ||
	    strcmp(name + 20, ".spool") != 0)
		return false;
	for (int i = 4; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*seq = v;
	return true;
}

/* Reads n bytes at off: how many were read (fewer only at the end of the file), or -1. */
static ssize_t
pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static int
write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Recomputes bytes: everything on disk from the head on. */
static void
recount(struct om_spool *s)
{
	uint64_t b = 0;

	for (size_t i = 0; i < s->nsegs; i++)
		b += s->segs[i].size;
	s->bytes = s->nsegs > 0 ? b - s->head_off : 0;
}

static int
buf_reserve(struct om_spool *s, size_t n)
{
	uint8_t *p;
	size_t cap;

	if (n <= s->bufcap && s->buf != NULL)
		return 0;
	cap = s->bufcap ? s->bufcap : 4096;
	while (cap < n)
		cap *= 2;
	if ((p = om_realloc(s->buf, cap)) == NULL)
		return OM_ENOMEM;
	s->buf = p;
	s->bufcap = cap;
	return 0;
}

static int
seg_push(struct om_spool *s, uint64_t seq, uint64_t size)
{
	if (s->nsegs == s->segcap) {
		size_t cap = s->segcap ? s->segcap * 2 : 16;
		struct seg *p = om_realloc(s->segs, cap * sizeof(*p));
		if (p == NULL)
			return OM_ENOMEM;
		s->segs = p;
		s->segcap = cap;
	}
	s->segs[s->nsegs].seq = seq;
	s->segs[s->nsegs].size = size;
	s->segs[s->nsegs].records = 0;
	s->nsegs++;
	return 0;
}

static void
rfd_drop(struct om_spool *s, uint64_t seq)
{
	if (s->rfd >= 0 && s->rseq == seq) {
		close(s->rfd);
		s->rfd = -1;
	}
}

/* Removes segs[0] from the list and its file from the disk (best effort). */
static void
seg_drop_front(struct om_spool *s)
{
	char name[SEG_NAME_LEN + 1];

	seg_name(s->segs[0].seq, name);
	rfd_drop(s, s->segs[0].seq);
	if (s->wfd >= 0 && s->nsegs == 1) {
		close(s->wfd);
		s->wfd = -1;
		s->unsynced = 0;
	}
	if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT)
		om_warn("spool: cannot remove '%s/%s': %s", s->dir, name, strerror(errno));
	memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof(*s->segs));
	s->nsegs--;
	s->head_off = 0;
	s->dir_dirty = true;
}

/* Drops the newest segment from the list and the disk (it holds nothing). */
static void
seg_drop_back(struct om_spool *s)
{
	char name[SEG_NAME_LEN + 1];

	if (s->nsegs == 1) {
		seg_drop_front(s);
		return;
	}
	seg_name(s->segs[s->nsegs - 1].seq, name);
	rfd_drop(s, s->segs[s->nsegs - 1].seq);
	unlinkat(s->dirfd, name, 0);
	s->nsegs--;
	s->dir_dirty = true;
}

/* The read descriptor of segment seq (cached), or -1 with s->err set. */
static int
seg_rfd(struct om_spool *s, uint64_t seq)
{
	char name[SEG_NAME_LEN + 1];

	if (s->rfd >= 0 && s->rseq == seq)
		return s->rfd;
	if (s->rfd >= 0)
		close(s->rfd);
	seg_name(seq, name);
	if ((s->rfd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0)
		om_seterr(s->err, sizeof(s->err), "open '%s/%s': %s", s->dir, name,
		          strerror(errno));
	s->rseq = seq;
	return s->rfd;
}

/* ---- reading records ---- */

/* A record header: 1 with the payload's length and CRC, 0 when h is none. */
static int
hdr_parse(const uint8_t *h, uint32_t *len, uint32_t *crc)
{
	if (memcmp(h, REC_MAGIC, 4) != 0 || h[4] != REC_VERSION || h[5] != 0 || h[6] != 0 ||
	    h[7] != 0 || get32(h + 16) != om_spool_crc32c(0, h, 16))
		return 0;
	*len = get32(h + 8);
	*crc = get32(h + 12);
	return *len <= OM_SPOOL_MAX_RECORD;
}

/* The next offset in from..end where the record magic starts, end if none; -1 on error. */
static int64_t
find_magic(struct om_spool *s, int fd, uint64_t from, uint64_t end)
{
	while (from < end && end - from >= HDR) {
		size_t want = end - from > SCAN_BLOCK ? SCAN_BLOCK : (size_t)(end - from);
		ssize_t got = pread_full(fd, s->scan, want, from);
		const uint8_t *m;

		if (got < 0)
			return -1;
		if (got < 4)
			break;
		if ((m = memmem(s->scan, (size_t)got, REC_MAGIC, 4)) != NULL)
			return (int64_t)(from + (uint64_t)(m - s->scan));
		if ((size_t)got < want)
			break;
		from += (uint64_t)got - 3; /* a magic may straddle the blocks */
	}
	return (int64_t)end;
}

/*
 * Finds the first valid record of segment seq at or after off and before
 * end, and reads its payload into s->buf.  Returns 1 with *at (its offset)
 * and *len, 0 when there is none, or OM_EIO / OM_ENOMEM.  Corrupt regions
 * passed over are added to *bad, and named in a warning when warn is set.
 */
static int
seg_next(struct om_spool *s, uint64_t seq, uint64_t off, uint64_t end, uint64_t *at, uint32_t *len,
         uint64_t *bad, bool warn)
{
	char name[SEG_NAME_LEN + 1];
	uint8_t h[HDR];
	uint64_t garbage = UINT64_MAX; /* start of the garbage being skipped */
	int fd = seg_rfd(s, seq);

	if (fd < 0)
		return OM_EIO;
	seg_name(seq, name);
	while (off < end && end - off >= HDR) {
		uint32_t n, crc;
		ssize_t got = pread_full(fd, h, HDR, off);

		if (got < 0)
			goto io_error;
		if (got < HDR)
			break; /* shorter than we knew: the rest is gone */
		if (hdr_parse(h, &n, &crc) && n <= end - off - HDR) {
			int rv = buf_reserve(s, n);
			if (rv != 0)
				return rv;
			if ((got = pread_full(fd, s->buf, n, off + HDR)) < 0)
				goto io_error;
			if ((size_t)got == n && om_spool_crc32c(0, s->buf, n) == crc) {
				if (garbage != UINT64_MAX) {
					(*bad)++;
					if (warn)
						om_warn("spool: '%s/%s': %llu corrupt bytes at "
						        "offset "
						        "%llu skipped",
						        s->dir, name,
						        (unsigned long long)(off - garbage),
						        (unsigned long long)garbage);
				}
				*at = off;
				*len = n;
				return 1;
			}
			/* An intact header with a damaged payload: skip exactly this record. */
			if (garbage != UINT64_MAX) {
				(*bad)++;
				if (warn)
					om_warn("spool: '%s/%s': %llu corrupt bytes at offset %llu "
					        "skipped",
					        s->dir, name, (unsigned long long)(off - garbage),
					        (unsigned long long)garbage);
				garbage = UINT64_MAX;
			}
			if (off + HDR + n == end)
				return 0; /* the last record: a torn tail for the caller */
			(*bad)++;
			if (warn)
				om_warn("spool: '%s/%s': record at offset %llu (%u bytes) fails "
				        "its checksum, skipped",
				        s->dir, name, (unsigned long long)off, n);
			off += HDR + n;
			continue;
		}
		/* No header here: resynchronise on the next magic. */
		if (garbage == UINT64_MAX)
			garbage = off;
		int64_t next = find_magic(s, fd, off + 1, end);
		if (next < 0)
			goto io_error;
		off = (uint64_t)next;
	}
	/* Garbage up to the end is the caller's to judge (torn tail or corrupt). */
	return 0;
io_error:
	om_seterr(s->err, sizeof(s->err), "read '%s/%s': %s", s->dir, name, strerror(errno));
	return OM_EIO;
}

/*
 * Counts the records of segs[i] from offset from, cutting a torn tail when
 * it is the newest segment.
 */
static int
seg_scan(struct om_spool *s, size_t i, uint64_t from, bool newest)
{
	struct seg *g = &s->segs[i];
	char name[SEG_NAME_LEN + 1];
	uint64_t off = from, good = from, at, bad = 0;
	uint32_t len;
	int rv;

	seg_name(g->seq, name);
	while ((rv = seg_next(s, g->seq, off, g->size, &at, &len, &bad, true)) == 1) {
		g->records++;
		good = off = at + HDR + len;
	}
	if (rv < 0)
		return rv;
	s->corrupt += bad;
	if (good >= g->size)
		return 0;
	if (newest) {
		int fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC);

		om_warn("spool: '%s/%s': torn or corrupt tail at offset %llu (%llu bytes), "
		        "truncated",
		        s->dir, name, (unsigned long long)good,
		        (unsigned long long)(g->size - good));
		if (fd >= 0 && ftruncate(fd, (off_t)good) == 0 && fsync(fd) == 0) {
			s->truncated += g->size - good;
			g->size = good;
		} else {
			om_warn("spool: cannot truncate '%s/%s': %s", s->dir, name,
			        strerror(errno));
			s->corrupt++;
		}
		if (fd >= 0)
			close(fd);
		rfd_drop(s, g->seq);
	} else {
		om_warn("spool: '%s/%s': %llu corrupt bytes at offset %llu skipped", s->dir, name,
		        (unsigned long long)(g->size - good), (unsigned long long)good);
		s->corrupt++;
	}
	return 0;
}

/* ---- the checkpoint ---- */

static int
head_write(struct om_spool *s, uint64_t seq, uint64_t off)
{
	uint8_t b[HEAD_SIZE];
	int fd, e;

	memcpy(b, HEAD_MAGIC, 8);
	put32(b + 8, HEAD_VERSION);
	put32(b + 12, 0);
	put64(b + 16, seq);
	put64(b + 24, off);
	put32(b + 32, om_spool_crc32c(0, b, 32));
	if ((fd = openat(s->dirfd, HEAD_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		goto fail;
	if (write_full(fd, b, sizeof(b)) != 0 || fsync(fd) != 0) {
		e = errno;
		close(fd);
		errno = e;
		goto fail;
	}
	if (close(fd) != 0 || renameat(s->dirfd, HEAD_TMP, s->dirfd, HEAD_NAME) != 0 ||
	    fsync(s->dirfd) != 0)
		goto fail;
	return 0;
fail:
	e = errno;
	unlinkat(s->dirfd, HEAD_TMP, 0);
	om_seterr(s->err, sizeof(s->err), "write '%s/%s': %s", s->dir, HEAD_NAME, strerror(e));
	return OM_EIO;
}

/* Reads the checkpoint: 1 when there is a valid one, 0 when none (or a bad one). */
static int
head_read(struct om_spool *s, uint64_t *seq, uint64_t *off)
{
	uint8_t b[HEAD_SIZE + 1];
	ssize_t got;
	int fd = openat(s->dirfd, HEAD_NAME, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno != ENOENT)
			om_warn("spool: cannot read '%s/%s': %s: reading from the oldest segment",
			        s->dir, HEAD_NAME, strerror(errno));
		return 0;
	}
	got = pread_full(fd, b, sizeof(b), 0);
	close(fd);
	if (got != HEAD_SIZE || memcmp(b, HEAD_MAGIC, 8) != 0 || get32(b + 8) != HEAD_VERSION ||
	    get32(b + 32) != om_spool_crc32c(0, b, 32) || get64(b + 16) > SEQ_MAX) {
		om_warn("spool: '%s/%s' is corrupt: reading from the oldest segment (results may "
		        "be delivered twice)",
		        s->dir, HEAD_NAME);
		return 0;
	}
	*seq = get64(b + 16);
	*off = get64(b + 24);
	return 1;
}

/* ---- open and close ---- */

static int
cmp_seg(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Lists the segment files with their sizes, in order. */
static int
seg_list(struct om_spool *s)
{
	struct dirent *de;
	DIR *d;
	int fd, rv = 0;

	if ((fd = dup(s->dirfd)) < 0 || (d = fdopendir(fd)) == NULL) {
		om_seterr(s->err, sizeof(s->err), "list '%s': %s", s->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return OM_ESYS;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		uint64_t seq;

		if (!seg_parse(de->d_name, &seq))
			continue;
		if (fstatat(s->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode)) {
			om_warn("spool: ignoring '%s/%s': not a regular file", s->dir, de->d_name);
			continue;
		}
		if ((rv = seg_push(s, seq, (uint64_t)st.st_size)) != 0)
			break;
	}
	closedir(d);
	if (rv == 0 && s->nsegs > 1)
		qsort(s->segs, s->nsegs, sizeof(*s->segs), cmp_seg);
	return rv;
}

static int
spool_load(struct om_spool *s)
{
	uint64_t ck_seq = 0, ck_off = 0;
	struct stat st;
	bool have_ck;
	int rv;

	if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
		om_seterr(s->err, sizeof(s->err), "mkdir '%s': %s", s->dir, strerror(errno));
		return OM_ESYS;
	}
	if ((s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		om_seterr(s->err, sizeof(s->err), "open '%s': %s", s->dir, strerror(errno));
		return OM_ESYS;
	}
	if (fstat(s->dirfd, &st) == 0 && (st.st_mode & 077) != 0)
		om_warn("spool: '%s' is open to other users (mode %03o); results can hold "
		        "secrets: chmod 700 it",
		        s->dir, (unsigned)(st.st_mode & 0777));
	if ((s->lockfd = openat(s->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		om_seterr(s->err, sizeof(s->err), "open '%s/%s': %s", s->dir, LOCK_NAME,
		          strerror(errno));
		return OM_ESYS;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		if (e == EWOULDBLOCK) {
			om_seterr(s->err, sizeof(s->err), "'%s' is in use by another process",
			          s->dir);
			return OM_EBUSY;
		}
		om_seterr(s->err, sizeof(s->err), "lock '%s/%s': %s", s->dir, LOCK_NAME,
		          strerror(e));
		return OM_ESYS;
	}
	unlinkat(s->dirfd, HEAD_TMP, 0);
	if ((rv = seg_list(s)) != 0)
		return rv;

	have_ck = head_read(s, &ck_seq, &ck_off) == 1;
	if (have_ck) {
		/* Segments before the checkpoint are consumed: a crash came before their removal.
		 */
		while (s->nsegs > 0 && s->segs[0].seq < ck_seq)
			seg_drop_front(s);
		if (s->nsegs > 0 && s->segs[0].seq == ck_seq)
			s->head_off = ck_off < s->segs[0].size ? ck_off : s->segs[0].size;
	}
	s->next_seq = s->nsegs > 0 ? s->segs[s->nsegs - 1].seq + 1 : 1;
	if (have_ck && ck_seq > s->next_seq)
		s->next_seq = ck_seq;
	for (size_t i = 0; i < s->nsegs; i++)
		if ((rv = seg_scan(s, i, i == 0 ? s->head_off : 0, i == s->nsegs - 1)) != 0)
			return rv;
	for (size_t i = 0; i < s->nsegs; i++)
		s->records += s->segs[i].records;
	/* Nothing left to read at the front: remove it (the checkpoint stays valid). */
	while (s->nsegs > 0 && s->segs[0].records == 0)
		seg_drop_front(s);
	recount(s);
	return 0;
}

int
om_spool_open(const char *dir, uint64_t max_bytes, uint64_t segment_bytes, struct om_spool **out)
{
	struct om_spool *s;
	int rv;

	*out = NULL;
	if (dir == NULL || dir[0] == '\0')
		return OM_EINVAL;
	if ((s = om_calloc(1, sizeof(*s))) == NULL)
		return OM_ENOMEM;
	s->dirfd = s->lockfd = s->wfd = s->rfd = -1;
	s->max_bytes = max_bytes;
	s->seg_bytes = segment_bytes ? segment_bytes : OM_SPOOL_SEGMENT_SIZE;
	if ((s->dir = om_strdup(dir)) == NULL || (s->scan = om_malloc(SCAN_BLOCK)) == NULL) {
		om_spool_close(s);
		return OM_ENOMEM;
	}
	if ((rv = spool_load(s)) != 0) {
		om_warn("spool: cannot open '%s': %s", dir, s->err[0] ? s->err : om_strerror(rv));
		om_spool_close(s);
		return rv;
	}
	s->err[0] = '\0';
	*out = s;
	return 0;
}

int
om_spool_close(struct om_spool *s)
{
	int rv = 0;

	if (s == NULL)
		return 0;
	if (s->dirfd >= 0)
		rv = om_spool_sync(s);
	if (s->wfd >= 0)
		close(s->wfd);
	if (s->rfd >= 0)
		close(s->rfd);
	if (s->lockfd >= 0)
		close(s->lockfd); /* releases the flock */
	if (s->dirfd >= 0)
		close(s->dirfd);
	om_free(s->segs);
	om_free(s->buf);
	om_free(s->scan);
	om_free(s->peeked);
	om_free(s->dir);
	om_free(s);
	return rv;
}

/* ---- writing ---- */

/* Closes the segment being appended to, fsyncing it first; a failed fsync abandons it. */
static int
seg_finish(struct om_spool *s)
{
	int rv = 0;

	if (s->wfd < 0)
		return 0;
	if (s->unsynced > 0 && fdatasync(s->wfd) != 0) {
		char name[SEG_NAME_LEN + 1];
		seg_name(s->segs[s->nsegs - 1].seq, name);
		om_seterr(s->err, sizeof(s->err), "fsync '%s/%s': %s", s->dir, name,
		          strerror(errno));
		rv = OM_EIO;
	}
	close(s->wfd);
	s->wfd = -1;
	s->unsynced = 0;
	return rv;
}

static int
seg_create(struct om_spool *s)
{
	char name[SEG_NAME_LEN + 1];
	int fd, rv;

	for (int tries = 0;; tries++) {
		if (s->next_seq > SEQ_MAX) {
			om_seterr(s->err, sizeof(s->err), "'%s': segment numbers exhausted",
			          s->dir);
			return OM_ERANGE;
		}
		seg_name(s->next_seq, name);
		fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
		            0600);
		if (fd >= 0)
			break;
		if (errno != EEXIST || tries == 3) {
			om_seterr(s->err, sizeof(s->err), "create '%s/%s': %s", s->dir, name,
			          strerror(errno));
			return OM_EIO;
		}
		s->next_seq++; /* someone else's file: never write into it */
	}
	if ((rv = seg_push(s, s->next_seq, 0)) != 0) {
		close(fd);
		unlinkat(s->dirfd, name, 0);
		return rv;
	}
	if (s->nsegs == 1)
		s->head_off = 0;
	s->next_seq++;
	s->wfd = fd;
	s->dir_dirty = true;
	return 0;
}

int
om_spool_append(struct om_spool *s, const void *data, size_t len)
{
	uint8_t h[HDR];
	struct iovec iov[2];
	struct seg *g;
	uint64_t need = HDR + (uint64_t)len;
	size_t done = 0;
	int rv, err;

	s->err[0] = '\0';
	if (len > OM_SPOOL_MAX_RECORD)
		return OM_EMSGSIZE;
	if (s->bytes + need > s->max_bytes) {
		om_seterr(s->err, sizeof(s->err), "'%s' is full: %llu of %llu bytes", s->dir,
		          (unsigned long long)s->bytes, (unsigned long long)s->max_bytes);
		return OM_EBUSY;
	}
	if (s->wfd >= 0 && s->segs[s->nsegs - 1].size > 0 &&
	    s->segs[s->nsegs - 1].size + need > s->seg_bytes && (rv = seg_finish(s)) != 0)
		return rv;
	if (s->wfd < 0 && (rv = seg_create(s)) != 0)
		return rv;
	g = &s->segs[s->nsegs - 1];

	memcpy(h, REC_MAGIC, 4);
	h[4] = REC_VERSION;
	h[5] = h[6] = h[7] = 0;
	put32(h + 8, (uint32_t)len);
	put32(h + 12, om_spool_crc32c(0, data, len));
	put32(h + 16, om_spool_crc32c(0, h, 16));
	while (done < need) {
		ssize_t w;
		int n = 0;

		if (done < HDR) {
			iov[n].iov_base = h + done;
			iov[n++].iov_len = HDR - done;
		}
		if (len > 0) {
			size_t from = done > HDR ? done - HDR : 0;
			iov[n].iov_base = (uint8_t *)data + from;
			iov[n++].iov_len = len - from;
		}
		errno = 0;
		w = writev(s->wfd, iov, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail;
		done += (size_t)w;
	}
	g->size += need;
	g->records++;
	s->records++;
	s->bytes += need;
	s->unsynced += need;
	return 0;
fail:
	err = errno != 0 ? errno : EIO;
	{
		char name[SEG_NAME_LEN + 1];
		seg_name(g->seq, name);
		om_seterr(s->err, sizeof(s->err), "write '%s/%s': %s", s->dir, name, strerror(err));
	}
	/* Cut the partial record; what cannot be cut is skipped as garbage by later reads. */
	if (done > 0 && ftruncate(s->wfd, (off_t)g->size) != 0) {
		struct stat st;
		g->size = fstat(s->wfd, &st) == 0 && (uint64_t)st.st_size > g->size
		                  ? (uint64_t)st.st_size
		                  : g->size + done;
	}
	/* Abandon the segment, keeping what it holds as durable as it can be made. */
	if (s->unsynced > 0)
		(void)fdatasync(s->wfd);
	close(s->wfd);
	s->wfd = -1;
	s->unsynced = 0;
	if (g->size == 0 && g->records == 0)
		seg_drop_back(s);
	recount(s);
	return OM_EIO;
}

int
om_spool_sync(struct om_spool *s)
{
	if (s->wfd >= 0 && s->unsynced > 0 && fdatasync(s->wfd) != 0) {
		char name[SEG_NAME_LEN + 1];
		seg_name(s->segs[s->nsegs - 1].seq, name);
		om_seterr(s->err, sizeof(s->err), "fsync '%s/%s': %s", s->dir, name,
		          strerror(errno));
		/* Never fsync this file again: its pages may be gone; the next append starts anew.
		 */
		close(s->wfd);
		s->wfd = -1;
		s->unsynced = 0;
		return OM_EIO;
	}
	s->unsynced = 0;
	if (s->dir_dirty) {
		if (fsync(s->dirfd) != 0) {
			om_seterr(s->err, sizeof(s->err), "fsync '%s': %s", s->dir,
			          strerror(errno));
			return OM_EIO;
		}
		s->dir_dirty = false;
	}
	return 0;
}

/* ---- reading back and consuming ---- */

static void
peek_note(struct om_spool *s, uint64_t seq, uint64_t off)
{
	if (s->npeeked == s->peekcap) {
		size_t cap = s->peekcap ? s->peekcap * 2 : 256;
		struct pos *p;

		if (cap > PEEK_CACHE_MAX || (p = om_realloc(s->peeked, cap * sizeof(*p))) == NULL)
			return; /* consume walks the records again instead */
		s->peeked = p;
		s->peekcap = cap;
	}
	s->peeked[s->npeeked].seq = seq;
	s->peeked[s->npeeked].off = off;
	s->npeeked++;
}

/* A segment walked to its end held fewer records than counted: they turned corrupt. */
static void
seg_fix(struct om_spool *s, struct seg *g, uint64_t found)
{
	char name[SEG_NAME_LEN + 1];

	if (found >= g->records)
		return;
	seg_name(g->seq, name);
	om_warn("spool: '%s/%s': %llu records became unreadable since the spool was opened", s->dir,
	        name, (unsigned long long)(g->records - found));
	s->corrupt += g->records - found;
	s->records -= g->records - found;
	g->records = found;
}

int
om_spool_peek(struct om_spool *s, size_t max, size_t max_bytes, om_spool_fn fn, void *arg)
{
	static const uint8_t empty[1];
	size_t taken = 0, total = 0;

	s->npeeked = 0;
	if (max > INT_MAX)
		max = INT_MAX;
	for (size_t i = 0; i < s->nsegs; i++) {
		struct seg *g = &s->segs[i];
		uint64_t off = i == 0 ? s->head_off : 0, found = 0, bad = 0, at;
		uint32_t len;
		int rv;

		for (;;) {
			if (taken == max)
				return (int)taken;
			if ((rv = seg_next(s, g->seq, off, g->size, &at, &len, &bad, false)) < 0)
				return rv;
			if (rv == 0)
				break;
			if (taken > 0 && (total > max_bytes || len > max_bytes - total))
				return (int)taken;
			if ((rv = fn(arg, len > 0 ? s->buf : empty, len)) < 0)
				return rv;
			if (rv > 0)
				return (int)taken;
			taken++;
			total += len;
			found++;
			off = at + HDR + len;
			peek_note(s, g->seq, off);
		}
		seg_fix(s, g, found);
	}
	return (int)taken;
}

int
om_spool_consume(struct om_spool *s, size_t n)
{
	size_t i = 0, k;
	uint64_t off;
	int rv;

	s->err[0] = '\0';
	if (n > s->records)
		return OM_EINVAL;
	if (n == 0)
		return 0;
	if (n <= s->npeeked) {
		/* The records peeked last: their ends are known. */
		for (k = 0; k < n; k++) {
			while (i < s->nsegs && s->segs[i].seq != s->peeked[k].seq)
				i++;
			if (i == s->nsegs || s->segs[i].records == 0)
				break; /* cannot happen; walk instead */
			s->segs[i].records--;
			s->records--;
		}
		if (k < n) {
			s->npeeked = 0;
			return OM_EINVAL;
		}
		off = s->peeked[n - 1].off;
	} else {
		uint64_t at, bad = 0;
		uint32_t len;

		off = s->head_off;
		for (k = 0; k < n && i < s->nsegs;) {
			struct seg *g = &s->segs[i];
			if ((rv = seg_next(s, g->seq, off, g->size, &at, &len, &bad, false)) < 0)
				return rv;
			if (rv == 1 && g->records > 0) {
				g->records--;
				s->records--;
				off = at + HDR + len;
				k++;
				continue;
			}
			seg_fix(s, g, 0); /* what the walk did not find is gone */
			if (i + 1 == s->nsegs)
				break;
			i++;
			off = 0;
		}
	}
	s->npeeked = 0;
	/*
	 * Everything before segs[i] at off is consumed now, and so is every
	 * segment from there on with no record left (the newest one too: the
	 * next append starts a new one).  The checkpoint goes first: a crash
	 * between it and the removals leaves files that the next open removes.
	 */
	while (i < s->nsegs && s->segs[i].records == 0) {
		i++;
		off = 0;
	}
	rv = i < s->nsegs ? head_write(s, s->segs[i].seq, off) : head_write(s, s->next_seq, 0);
	while (i > 0) {
		seg_drop_front(s);
		i--;
	}
	if (s->nsegs > 0)
		s->head_off = off;
	recount(s);
	return rv;
}

void
om_spool_stats(const struct om_spool *s, struct om_spool_stats *st)
{
	st->records = s->records;
	st->bytes = s->bytes;
	st->segments = s->nsegs;
	st->corrupt = s->corrupt;
	st->truncated = s->truncated;
	st->unsynced = s->unsynced;
}

const char *
om_spool_dir(const struct om_spool *s)
{
	return s->dir;
}

const char *
om_spool_errstr(const struct om_spool *s)
{
	return s->err;
}
