/*
 * The worker's spool: an append-only, checksummed record log in a directory,
 * for results the master has not acknowledged yet (store and forward).
 *
 * Records are opaque byte strings (om-worker stores one msgpack REPORT with
 * one item per record), read back oldest first and consumed in order.  A
 * record is delivered at least once: consuming is durable, but a record
 * read and sent whose consumption did not reach the disk is read again
 * after a restart.
 *
 * On disk (all integers little-endian):
 *
 *   DIR/seg-%016llu.spool  segment files, numbered upwards; records are
 *                          appended to the newest one, which is rotated at
 *                          segment_bytes.  Each record:
 *                            0  magic "OMSR"
 *                            4  version (1), 1 byte
 *                            5  flags (0), 1 byte
 *                            6  reserved (0), 2 bytes
 *                            8  payload length, u32 (<= OM_SPOOL_MAX_RECORD)
 *                           12  CRC-32C of the payload, u32
 *                           16  CRC-32C of bytes 0..15, u32
 *                           20  payload
 *   DIR/head               the consume checkpoint (36 bytes): "OMSPHEAD",
 *                          version u32 (1), reserved u32, segment u64,
 *                          offset u64, CRC-32C of bytes 0..31 u32.
 *                          Everything before (segment, offset) is consumed.
 *                          Written to head.tmp, fsynced, renamed, and the
 *                          directory fsynced.
 *   DIR/lock               flock()ed while a process has the spool open.
 *
 * A segment is removed once every record in it is consumed.  Opening
 * validates every unconsumed record: a corrupt record with an intact header
 * is skipped by its length, bytes with no valid header are skipped up to
 * the next valid record; both are counted (corrupt) and never delivered.
 * Garbage after the last valid record of the newest segment is a torn
 * write: the file is cut there, with a warning naming file and offset.
 * Appends after an open always start a new segment.
 *
 * Durability: appends reach the page cache; om_spool_sync (and close, and
 * every rotation) fsyncs the segment.  After a failed fsync or write the
 * segment is abandoned and the next append starts a new one: a failed fsync
 * is never retried on the same file.
 *
 * Not thread-safe: one caller at a time (om-worker holds its outbox lock).
 * Every function returns 0 (or a count) or a negative OM_E* code.
 */
#ifndef OM_SPOOL_H
#define OM_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define OM_SPOOL_MAX_RECORD   (16u << 20) /* payload bytes of one record */
#define OM_SPOOL_HEADER       20          /* bytes before each payload */
#define OM_SPOOL_SEGMENT_SIZE (8u << 20)  /* default rotation size */

struct om_spool;

struct om_spool_stats {
	uint64_t records;  /* unconsumed records */
	uint64_t bytes;    /* on disk from the oldest unconsumed record on: what max_bytes bounds */
	uint64_t segments; /* segment files */
	uint64_t corrupt;  /* corrupt records or regions skipped since open */
	uint64_t truncated; /* bytes of torn tail cut at open */
	uint64_t unsynced;  /* bytes appended since the last fsync */
};

/*
 * Opens the spool in dir, creating dir (mode 0700) when missing, and scans
 * it (see above).  max_bytes bounds stats.bytes; segment_bytes is the
 * rotation size, 0 for OM_SPOOL_SEGMENT_SIZE.  OM_EBUSY when another open
 * spool holds the directory, OM_ESYS when it cannot be created or opened,
 * OM_EIO on a read error.  On success the caller owns *out and must call
 * om_spool_close.  Warnings (torn tail, corrupt records) go to om_log.
 */
int om_spool_open(const char *dir, uint64_t max_bytes, uint64_t segment_bytes,
                  struct om_spool **out);

/*
 * Syncs (as om_spool_sync), closes and frees s; NULL is a no-op.  Returns
 * the sync's result: s is freed either way.
 */
int om_spool_close(struct om_spool *s);

/*
 * Appends one record of len bytes (0 allowed), copied: the caller keeps
 * data.  OM_EMSGSIZE above OM_SPOOL_MAX_RECORD, OM_EBUSY when stats.bytes
 * would pass max_bytes (nothing written), OM_EIO when the write (or the
 * fsync of a rotated segment) fails: the record is not in the spool, the
 * segment is abandoned and the next append starts a new one.  The record
 * is durable only after the next successful om_spool_sync.
 */
int om_spool_append(struct om_spool *s, const void *data, size_t len);

/*
 * Makes every appended record durable: fsyncs the newest segment, and the
 * directory when a segment was created.  OM_EIO on failure; the segment is
 * then abandoned (never fsynced again) and appends go to a new one.
 */
int om_spool_sync(struct om_spool *s);

/*
 * Called by om_spool_peek for each record, oldest first.  data is valid
 * only during the call (the callee copies what it keeps; data is never NULL,
 * even for len 0).  Return 0 to take the record, a positive value to stop
 * before it (it is not counted), a negative OM_E* code to abort the peek
 * with that code.
 */
typedef int (*om_spool_fn)(void *arg, const uint8_t *data, size_t len);

/*
 * Reads the oldest unconsumed records without consuming them: at most max
 * records, and no more payload bytes than max_bytes except that the first
 * record is always offered.  Returns the number of records taken, or a
 * negative code (OM_EIO on a read error, or fn's).  Records that turned
 * corrupt since open are skipped and counted.
 */
int om_spool_peek(struct om_spool *s, size_t max, size_t max_bytes, om_spool_fn fn, void *arg);

/*
 * Consumes the n oldest records (OM_EINVAL when n > stats.records): writes
 * the checkpoint durably, then removes segment files with nothing left to
 * read.  On OM_EIO (the checkpoint could not be written) the records are
 * consumed in memory all the same, but may be read again after a reopen.
 */
int om_spool_consume(struct om_spool *s, size_t n);

/* Fills *st; never fails. */
void om_spool_stats(const struct om_spool *s, struct om_spool_stats *st);

/* The directory; valid until om_spool_close, caller does not free. */
const char *om_spool_dir(const struct om_spool *s);

/*
 * What the last failure was about ("write 'DIR/seg-...': No space left on
 * device"), or "" when nothing failed; valid until the next call on s.
 */
const char *om_spool_errstr(const struct om_spool *s);

/* CRC-32C (Castagnoli) of n bytes, continuing from crc (0 to start). */
uint32_t om_spool_crc32c(uint32_t crc, const void *data, size_t n);

#endif
