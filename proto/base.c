#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "om/base.h"

static unsigned long alloc_fail_at; /* 0: never */
static unsigned long alloc_count;

static int
alloc_should_fail(void)
{
	if (alloc_fail_at == 0)
		return 0;
	if (++alloc_count == alloc_fail_at) {
		alloc_fail_at = 0;
		return 1;
	}
	return 0;
}

void
om_alloc_fail_at(unsigned long nth)
{
	alloc_count = 0;
	alloc_fail_at = nth;
}

void *
om_malloc(size_t n)
{
	if (alloc_should_fail())
		return NULL;
	return malloc(n ? n : 1);
}

void *
om_calloc(size_t n, size_t size)
{
	if (alloc_should_fail())
		return NULL;
	return calloc(n ? n : 1, size ? size : 1);
}

void *
om_realloc(void *p, size_t n)
{
	if (alloc_should_fail())
		return NULL;
	return realloc(p, n ? n : 1);
}

void
om_free(void *p)
{
	free(p);
}

char *
om_strndup(const char *s, size_t n)
{
	char *d = om_malloc(n + 1);

	if (d == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *
om_strdup(const char *s)
{
	return om_strndup(s, strlen(s));
}

void
om_buf_init(struct om_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

static int
buf_grow(struct om_buf *b, size_t need)
{
	size_t ncap;
	uint8_t *nd;

	if (need > b->max)
		return OM_EMSGSIZE;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap = ncap > b->max / 2 ? b->max : ncap * 2;
	if ((nd = om_realloc(b->data, ncap)) == NULL)
		return OM_ENOMEM;
	b->data = nd;
	b->cap = ncap;
	return 0;
}

int
om_buf_append(struct om_buf *b, const void *p, size_t n)
{
	int rv;

	if (b->err)
		return b->err;
	if (n > b->max - b->len) {
		b->err = OM_EMSGSIZE;
		return b->err;
	}
	if ((rv = buf_grow(b, b->len + n)) != 0) {
		b->err = rv;
		return rv;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int
om_buf_putc(struct om_buf *b, uint8_t c)
{
	return om_buf_append(b, &c, 1);
}

int
om_buf_printf(struct om_buf *b, const char *fmt, ...)
{
	char small[256], *big = NULL;
	va_list ap;
	int n, rv;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return b->err = OM_EINVAL;
	if ((size_t)n < sizeof(small))
		return om_buf_append(b, small, (size_t)n);
	if ((big = om_malloc((size_t)n + 1)) == NULL)
		return b->err = OM_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	rv = om_buf_append(b, big, (size_t)n);
	om_free(big);
	return rv;
}

void
om_buf_reset(struct om_buf *b)
{
	b->len = 0;
	b->err = 0;
}

void
om_buf_release(struct om_buf *b)
{
	om_free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->err = 0;
}

void
om_hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
om_hex_decode(const char *in, uint8_t *out, size_t n)
{
	size_t i;

	if (strlen(in) != 2 * n)
		return OM_EINVAL;
	for (i = 0; i < n; i++) {
		int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return OM_EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int64_t
om_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
om_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
om_shell_quote(struct om_buf *out, const char *s, size_t n)
{
	size_t i;

	if (memchr(s, '\0', n) != NULL)
		return out->err = OM_EINVAL;
	om_buf_putc(out, '\'');
	for (i = 0; i < n; i++) {
		if (s[i] == '\'')
			om_buf_append(out, "'\\''", 4);
		else
			om_buf_putc(out, (uint8_t)s[i]);
	}
	return om_buf_putc(out, '\'');
}

int
om_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9') /* strtoull would take "-1" and " 1" */
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int
om_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (*s < '0' || *s > '9') /* strtoull would take "-1" and " 1" */
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift != 0)
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return -1;
	v <<= shift;
	if (v < min || v > max)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

int
om_log_level_parse(const char *s, enum om_log_level *out)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	int i;

	for (i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return (*out = (enum om_log_level)i), 0;
	return -1;
}

static const char *log_prog = "om";
static enum om_log_level log_level = OM_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void
om_log_setup(const char *prog, enum om_log_level level)
{
	log_prog = prog;
	log_level = level;
}

void
om_log(enum om_log_level level, const char *fmt, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	char when[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s.%03ldZ %s[%d]: %s: ", when, ts.tv_nsec / 1000000, log_prog,
	        (int)getpid(), names[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&log_lock);
}

int
om_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *data;
	size_t got = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? OM_ENOTFOUND : OM_EIO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		close(fd);
		return S_ISREG(st.st_mode) ? OM_EMSGSIZE : OM_EINVAL;
	}
	if ((data = om_malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return OM_ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	data[got] = '\0'; /* convenient for text files; len excludes it */
	*out = data;
	*len = got;
	return 0;
}

int
om_write_file(const char *path, const void *data, size_t len, unsigned mode)
{
	char tmp[4096];
	const uint8_t *p = data;
	int fd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
		return OM_EINVAL;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
		return OM_EIO;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			unlink(tmp);
			return OM_EIO;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return OM_EIO;
	}
	return 0;
}

void
om_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* --- fault injection ----------------------------------------------------------- */

#define FAULT_MAX 8

static struct fault {
	char point[48];
	unsigned long at, seen;
} faults[FAULT_MAX];
static size_t nfaults;
static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static char fault_spec[256];

static void
fault_init(void)
{
	const char *env = getenv("OM_TEST_FAULT");
	char *save = NULL, *tok, buf[256];

	if (env == NULL || *env == '\0')
		return;
	snprintf(fault_spec, sizeof(fault_spec), "%s", env);
	snprintf(buf, sizeof(buf), "%s", env);
	for (tok = strtok_r(buf, ",", &save); tok && nfaults < FAULT_MAX;
	     tok = strtok_r(NULL, ",", &save)) {
		char *colon = strrchr(tok, ':');
		unsigned long n = 1;
		if (colon != NULL) {
			*colon = '\0';
			n = strtoul(colon + 1, NULL, 10);
		}
		if (n == 0 || strlen(tok) >= sizeof(faults[0].point))
			continue;
		snprintf(faults[nfaults].point, sizeof(faults[0].point), "%s", tok);
		faults[nfaults++].at = n;
	}
}

const char *
om_fault_armed(void)
{
	pthread_once(&fault_once, fault_init);
	return fault_spec;
}

void
om_fault(const char *point)
{
	size_t i;

	pthread_once(&fault_once, fault_init);
	if (nfaults == 0)
		return;
	pthread_mutex_lock(&fault_lock);
	for (i = 0; i < nfaults; i++)
		if (strcmp(faults[i].point, point) == 0 && ++faults[i].seen == faults[i].at) {
			/* stderr is unbuffered: the test sees which point fired */
			fprintf(stderr, "om_fault: %s:%lu fired, SIGKILL\n", point, faults[i].at);
			raise(SIGKILL);
		}
	pthread_mutex_unlock(&fault_lock);
}
