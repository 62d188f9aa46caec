/*
 * A standalone main() for libFuzzer-style harnesses, so that `make check`
 * can run every tests/fuzz/fuzz_*.c as a smoke test with plain gcc and
 * ASan/UBSan, without clang's libFuzzer.
 *
 *   fuzz_x [SEED_DIR...]
 *
 * Runs every regular file in the seed directories (sorted, so runs repeat),
 * then mutated inputs until OM_FUZZ_RUNS inputs (default 20000) or
 * OM_FUZZ_SECONDS (default 10) have passed, whichever comes first.  The
 * mutations come from an xorshift generator seeded by OM_FUZZ_SEED
 * (default 1): the same seed gives the same inputs.  A crash is reported by
 * the sanitizers, which abort the process; reaching the end means success.
 *
 * Each input is handed over in a heap block of exactly its size, so any
 * read past the end is caught by ASan.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SEED_MAX_BYTES (1 << 20) /* larger seed files are cut */
#define SEED_MAX_FILES 10000
#define INPUT_MAX      65536 /* mutated inputs never grow past this */
#define RANDOM_MAX     4096  /* length cap of purely random inputs */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a harness, as with libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

struct seed {
	uint8_t *data;
	size_t len;
};

static struct seed *seeds;
static size_t nseeds;
static uint64_t rng_state;

/* xorshift64*: tiny, fast and good enough to choose mutations. */
static uint64_t
rng(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform-enough value in 0..n-1; n must be > 0. */
static size_t
rng_below(size_t n)
{
	return (size_t)(rng() % n);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads an unsigned decimal environment variable; def when unset or malformed. */
static unsigned long
env_ulong(const char *name, unsigned long def)
{
	const char *s = getenv(name);
	char *end;
	unsigned long v;

	if (s == NULL || *s == '\0')
		return def;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || s[0] == '-') {
		fprintf(stderr, "fuzz: ignoring %s='%s' (not a number)\n", name, s);
		return def;
	}
	return v;
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		fprintf(stderr, "fuzz: out of memory\n");
		exit(2);
	}
	return p;
}

/* Hands data to the harness in a block of exactly len bytes. */
static void
run_one(const uint8_t *data, size_t len)
{
	uint8_t *copy = xmalloc(len);

	if (len > 0)
		memcpy(copy, data, len);
	LLVMFuzzerTestOneInput(copy, len);
	free(copy);
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
add_seed_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct seed *s;
	uint8_t *buf;
	size_t len;

	if (f == NULL) {
		fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
		return;
	}
	buf = xmalloc(SEED_MAX_BYTES);
	len = fread(buf, 1, SEED_MAX_BYTES, f);
	fclose(f);
	if (nseeds == SEED_MAX_FILES) {
		free(buf);
		return;
	}
	/* Gives back the unused part; if that fails the big block still serves. */
	{
		uint8_t *shrunk = realloc(buf, len ? len : 1);

		if (shrunk != NULL)
			buf = shrunk;
	}
	s = realloc(seeds, (nseeds + 1) * sizeof(*seeds));
	if (s == NULL) {
		fprintf(stderr, "fuzz: out of memory\n");
		exit(2);
	}
	seeds = s;
	seeds[nseeds].data = buf;
	seeds[nseeds].len = len;
	nseeds++;
}

/* Loads every regular file of dir, in name order. */
static void
load_seed_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	if (d == NULL) {
		fprintf(stderr, "fuzz: %s: %s\n", dir, strerror(errno));
		exit(2);
	}
	while ((de = readdir(d)) != NULL && n < SEED_MAX_FILES) {
		size_t plen = strlen(dir) + strlen(de->d_name) + 2;
		char *path;
		struct stat st;
		char **nn;

		if (de->d_name[0] == '.')
			continue;
		path = xmalloc(plen);
		snprintf(path, plen, "%s/%s", dir, de->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
			free(path);
			continue;
		}
		nn = realloc(names, (n + 1) * sizeof(*names));
		if (nn == NULL) {
			fprintf(stderr, "fuzz: out of memory\n");
			exit(2);
		}
		names = nn;
		names[n++] = path;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		add_seed_file(names[i]);
		free(names[i]);
	}
	free(names);
}

/*
 * One mutation of buf (len bytes in use, room for INPUT_MAX).  Returns the
 * new length.
 */
static size_t
mutate_once(uint8_t *buf, size_t len)
{
	static const uint8_t special[] = {0x00, 0xff, 0x7f, 0x80};

	switch (rng_below(8)) {
	case 0: /* flip one bit */
		if (len > 0)
			buf[rng_below(len)] ^= (uint8_t)(1u << rng_below(8));
		break;
	case 1: /* set a byte to an edge value or a random one */
		if (len > 0) {
			size_t k = rng_below(sizeof(special) + 1);

			buf[rng_below(len)] = k < sizeof(special) ? special[k] : (uint8_t)rng();
		}
		break;
	case 2: { /* insert random bytes */
		size_t at = rng_below(len + 1), n = 1 + rng_below(16);

		if (len + n > INPUT_MAX)
			break;
		memmove(buf + at + n, buf + at, len - at);
		for (size_t i = 0; i < n; i++)
			buf[at + i] = (uint8_t)rng();
		len += n;
		break;
	}
	case 3: { /* delete a range */
		size_t at, n;

		if (len == 0)
			break;
		at = rng_below(len);
		n = 1 + rng_below(len - at);
		memmove(buf + at, buf + at + n, len - at - n);
		len -= n;
		break;
	}
	case 4: { /* duplicate a range in place */
		size_t at, n;

		if (len == 0)
			break;
		at = rng_below(len);
		n = 1 + rng_below(len - at);
		if (len + n > INPUT_MAX)
			break;
		memmove(buf + at + n, buf + at, len - at);
		len += n;
		break;
	}
	case 5: { /* splice: keep a head of this input, append a tail of a seed */
		const struct seed *s;
		size_t head, from, n;

		if (nseeds == 0)
			break;
		s = &seeds[rng_below(nseeds)];
		head = rng_below(len + 1);
		from = rng_below(s->len + 1);
		n = s->len - from;
		if (head + n > INPUT_MAX)
			n = INPUT_MAX - head;
		memcpy(buf + head, s->data + from, n);
		len = head + n;
		break;
	}
	case 6: /* truncate */
		len = rng_below(len + 1);
		break;
	case 7: /* repeat a byte a few times: long runs find length limits */
		if (len > 0) {
			size_t at = rng_below(len), n = 1 + rng_below(64);

			if (len + n > INPUT_MAX)
				break;
			memmove(buf + at + n, buf + at, len - at);
			memset(buf + at, buf[at + n], n);
			len += n;
		}
		break;
	}
	return len;
}

/* Builds the next input in buf: a mutated seed, or now and then pure noise. */
static size_t
next_input(uint8_t *buf)
{
	size_t len, rounds;

	if (nseeds == 0 || rng_below(8) == 0) {
		len = rng_below(RANDOM_MAX + 1);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rng();
		return len;
	}
	{
		const struct seed *s = &seeds[rng_below(nseeds)];

		len = s->len > INPUT_MAX ? INPUT_MAX : s->len;
		memcpy(buf, s->data, len);
	}
	rounds = 1 + rng_below(4);
	for (size_t i = 0; i < rounds; i++)
		len = mutate_once(buf, len);
	return len;
}

int
main(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	unsigned long runs = env_ulong("OM_FUZZ_RUNS", 20000);
	unsigned long seconds = env_ulong("OM_FUZZ_SECONDS", 10);
	unsigned long count = 0;
	double start = now_s(), deadline = start + (double)seconds;
	uint8_t *buf;

	rng_state = env_ulong("OM_FUZZ_SEED", 1);
	if (rng_state == 0)
		rng_state = 1; /* xorshift is stuck at zero */
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);

	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-') {
			fprintf(stderr, "usage: %s [SEED_DIR...]\n", name);
			return 2;
		}
		load_seed_dir(argv[i]);
	}

	/* Seeds always run in full: they are the regression corpus. */
	for (size_t i = 0; i < nseeds; i++) {
		run_one(seeds[i].data, seeds[i].len);
		count++;
	}

	buf = xmalloc(INPUT_MAX);
	for (unsigned long i = 0; i < runs; i++) {
		size_t len;

		/* The clock is cheap next to any harness, but once per 16 is plenty. */
		if ((i & 15) == 0 && now_s() >= deadline)
			break;
		len = next_input(buf);
		run_one(buf, len);
		count++;
	}
	free(buf);
	for (size_t i = 0; i < nseeds; i++)
		free(seeds[i].data);
	free(seeds);

	printf("fuzz %s: %lu inputs in %.1f s\n", name, count, now_s() - start);
	return 0;
}
