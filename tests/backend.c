/* backend.c - test/demo HTTP/1.1 backend that reports every connection event on stdout. */
/*
 * usage: backend [-p PORT] [-q] [-m MODE] [-i NAME]
 *
 * Binds 127.0.0.1:PORT (0 = the kernel picks), prints "listening port=N",
 * then one line per event (unless -q).
 *
 * -m MODE makes every request misbehave, except /healthz and /set-health,
 * which always work normally (so health checks stay under the test's
 * control).  The request is read completely (head and body) first:
 *   normal        the default: answer by the endpoints below
 *   reset         answer nothing, ev=dropped how=rst, close with a RST
 *   fin           answer nothing, ev=dropped how=fin, close (FIN)
 *   hang          answer nothing, as /hang
 *   status=C      answer status C (200-599), as /status?code=C
 *   slowhead=MS   wait MS ms (0-600000; ev=cancelled if the peer goes), then
 *                 answer as normal
 * -i NAME adds the field "X-Backend: NAME" to every final response (NAME:
 * 1-64 printable ASCII bytes, no space), so a client can tell which
 * backend answered.
 *
 * Event lines:
 *   t=US ev=open conn=C peer=IP:PORT
 *   t=US ev=request conn=C req=R method=M path=TARGET raw=HEX
 *   t=US ev=header conn=C req=R name=NAME value=VALUE
 *   t=US ev=headers_end conn=C req=R
 *   t=US ev=body_done conn=C req=R bytes=N
 *   t=US ev=response conn=C req=R status=S
 *   t=US ev=done conn=C req=R bytes=N
 *   t=US ev=cancelled conn=C req=R after_ms=N phase=reading_body|before_response|sending_body
 *   t=US ev=interim conn=C req=R status=S
 *   t=US ev=dropped conn=C req=R method=M how=fin|rst
 *   t=US ev=close conn=C by=peer|self
 * t is CLOCK_MONOTONIC in microseconds.  NAME is lower-case; in VALUE and
 * TARGET, space, '%', control and non-ASCII bytes are written as %XX
 * (TARGET keeps '%' as is, it is already percent-encoded); HEX is the
 * target's exact bytes in lower-case hex, so a re-encoding shows.
 * One thread per connection, blocking sockets, keep-alive.
 *
 * Endpoints (any method; the request body is read first, then answered;
 * HEAD gets the head of GET and no body):
 *   /fast                  200 "ok\n"
 *   /slow?ms=M             200 after M ms (default 1000)
 *   /hang                  never answers (until the peer goes, or 120 s)
 *   /stream?chunks=N&size=K&interval_ms=I   chunked, N chunks of K 'x'
 *   /idle?after_ms=M       one chunk "hello", then M ms of silence, then the end
 *   /bytes?n=N             Content-Length N, byte i is i % 251
 *   /echo                  the request body back
 *   /upload                200 "got N\n" (N body bytes)
 *   /status?code=C         status C, body "status C\n" (none for 204/304)
 *   /headers               the request headers, one "name: value" line each
 *   /close                 200 "bye\n" with Connection: close, then close
 *   /badframe?kind=K, /badresp?kind=K
 *                          a malformed response a proxy must refuse; K is a
 *                          number or a name (see h_badframe); Connection:
 *                          close and close after, unless keep=1: then no
 *                          Connection field and the connection stays open
 *                          (so a proxy's own close shows as by=peer)
 *   /interim?n=N&status=S  N interim responses of status S (100, 102 or
 *                          103, default 103 with "Link: </x>; rel=preload"),
 *                          each an ev=interim, then 200 "ok\n"
 *   /chunked?chunks=N&size=K&ext=1&trailers=1&hex=upper
 *                          chunked body of N chunks of K bytes, the /bytes
 *                          pattern over the whole body; ext=1 adds the chunk
 *                          extensions ;a=b;q="x;y" to every size line
 *                          (the last chunk's too); trailers=1 sends the
 *                          trailer fields "X-Trailer: t1" and "X-Sum: N*K"
 *                          (announced in a Trailer field); hex=upper writes
 *                          the sizes in upper-case hex
 *   /nobody?code=C&cl=N&te=1
 *                          status C (default 304) with a misleading
 *                          "Content-Length: N" (default 100; cl=-1: none)
 *                          or, with te=1, "Transfer-Encoding: chunked", and
 *                          no body at all; keep-alive
 *   /split?n=N&piece=P&delay_ms=D
 *                          head and a Content-Length body of N pattern bytes
 *                          written P bytes at a time, D ms apart (default
 *                          n=100, piece=1, delay_ms=1)
 *   /untilclose?n=N        HTTP/1.1, Connection: close, no Content-Length
 *                          and no chunking: N pattern bytes, then close
 *   /http10?n=N            HTTP/1.0 response, no Content-Length: N pattern
 *                          bytes, then close
 *   /drop-next             200 "ok\n" keep-alive; the NEXT request on this
 *                          connection is read completely (head and body),
 *                          an ev=dropped is printed and the connection is
 *                          closed (FIN) without a response byte
 *   /reset-next            as /drop-next, but the next request gets a RST
 *                          (SO_LINGER 0 close) instead of the FIN
 *   /big-head?n=N&field=F  200 "ok\n" after about N bytes (default 16384)
 *                          of fields "X-Pad-IIII: vvv..." of about F bytes
 *                          each (default 1000, the field line with CRLF)
 *   /slowread?rate=R       reads the body at about R bytes/s (default
 *                          1 MiB/s), then sends it back as /echo does
 *   /healthz               the health status (200 "ok\n" until set
 *                          otherwise; any other C: body "status C\n")
 *   /set-health?code=C     /healthz answers C (200-599) from now on, on
 *                          every connection; 200 "set\n"
 *   anything else          404
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 65536
#define LINE_MAX_LEN 4096
#define IOBUF 65536
#define MAX_HEADERS 128
#define HANG_CAP_MS 120000
#define MAX_WAIT_MS 600000
#define MAX_CHUNK (1 << 20)
#define MAX_ECHO ((int64_t)256 << 20)
#define BYTES_PIECE 65536
#define THREAD_STACK (256 * 1024)
#define NAME_MAX_LEN 64

/* How a request ended for the connection that carried it. */
enum outcome {
	OUT_KEEP,  /* answered; the connection may carry another request */
	OUT_CLOSE, /* answered (or not); the backend closes the connection */
	OUT_GONE,  /* the peer went away */
};

/* What /drop-next and /reset-next arrange for the connection's next request. */
enum { DROP_NONE, DROP_FIN, DROP_RST };

/* What -m makes of every request but the health endpoints. */
enum mode_kind { MODE_NORMAL, MODE_RESET, MODE_FIN, MODE_HANG, MODE_STATUS, MODE_SLOWHEAD };

/* Results of body and line reads. */
enum rd { RD_OK = 0, RD_GONE = -1, RD_BAD = -2 };

struct conn {
	int fd;
	long id;
	char peer[80];
	bool peer_gone;
	int drop_next;     /* DROP_*: what to do with the next request */
	bool reset;        /* close with a RST (SO_LINGER 0) */
	size_t start, end; /* unread bytes are buf[start..end) */
	char buf[IOBUF];
};

struct header {
	char *name;
	char *value;
};

struct request {
	long id;
	int64_t start_us;
	char *head; /* owns the strings below */
	char *method;
	char *target;
	char *path;  /* copy of target without the query */
	const char *query; /* points into target, after '?', or "" */
	struct header h[MAX_HEADERS];
	size_t nh;
	bool keep_alive;
	bool chunked;
	bool head_only;
	bool expect_continue;
	int64_t content_length; /* -1: none */
	int64_t read_rate;      /* body bytes per second; 0: as fast as it comes */
	char *body;             /* stored body (echo only) */
	size_t body_len;
	size_t body_cap;
};

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static bool quiet;
static atomic_long next_conn = 1;
static atomic_long next_req = 1;
static unsigned char pattern[BYTES_PIECE + 251];
static enum mode_kind mode = MODE_NORMAL;
static long long mode_arg; /* the status of status=C, the wait of slowhead=MS */
static char name_field[NAME_MAX_LEN + 16] = ""; /* "X-Backend: NAME\r\n" or "" */
static atomic_int health_code = 200;

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print one event line, stamped, atomically with respect to other threads. */
static void emit(const char *fmt, ...)
{
	va_list ap;
	int64_t t;

	if (quiet)
		return;
	t = now_us();
	pthread_mutex_lock(&out_lock);
	printf("t=%" PRId64 " ", t);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* Percent-encode the bytes of s that would break an event line. */
static char *encode(const char *s, bool keep_percent)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1);
	size_t j = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		bool plain = ch > 0x20 && ch < 0x7f && (ch != '%' || keep_percent);

		if (plain) {
			out[j++] = (char)ch;
			continue;
		}
		out[j++] = '%';
		out[j++] = hex[ch >> 4];
		out[j++] = hex[ch & 15];
	}
	out[j] = '\0';
	return out;
}

/* Every byte of s as two lower-case hex digits. */
static char *hex(const char *s)
{
	static const char digits[] = "0123456789abcdef";
	size_t n = strlen(s);
	char *out = malloc(2 * n + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[(unsigned char)s[i] >> 4];
		out[2 * i + 1] = digits[(unsigned char)s[i] & 15];
	}
	out[2 * n] = '\0';
	return out;
}

/* Parse a decimal integer in [min, max] from the whole of s. */
static bool parse_long(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (!s || !*s)
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Value of query parameter `name` clamped to [min, max], or def. */
static long long query_num(const char *query, const char *name, long long def,
			   long long min, long long max)
{
	size_t nlen = strlen(name);
	const char *p = query;

	while (p && *p) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);

		if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			char tmp[32];
			size_t vlen = len - nlen - 1;
			long long v;

			if (vlen >= sizeof tmp)
				return def;
			memcpy(tmp, p + nlen + 1, vlen);
			tmp[vlen] = '\0';
			if (!parse_long(tmp, LLONG_MIN, LLONG_MAX, &v))
				return def;
			return v < min ? min : v > max ? max : v;
		}
		p = amp ? amp + 1 : NULL;
	}
	return def;
}

/* Whether query parameter `name` is present with exactly the value `value`. */
static bool query_is(const char *query, const char *name, const char *value)
{
	size_t nlen = strlen(name), vlen = strlen(value);
	const char *p = query;

	while (p && *p) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);

		if (len == nlen + 1 + vlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=' &&
		    strncmp(p + nlen + 1, value, vlen) == 0)
			return true;
		p = amp ? amp + 1 : NULL;
	}
	return false;
}

/* ---- socket I/O ---- */

/* Refill the input buffer: 1 on data, 0 on EOF, -1 on error. */
static int conn_fill(struct conn *c)
{
	ssize_t n;

	do {
		n = recv(c->fd, c->buf, sizeof c->buf, 0);
	} while (n < 0 && errno == EINTR);
	if (n <= 0) {
		c->peer_gone = true;
		return n == 0 ? 0 : -1;
	}
	c->start = 0;
	c->end = (size_t)n;
	return 1;
}

/* Next input byte, or -1 when the peer is gone. */
static int conn_getc(struct conn *c)
{
	if (c->start == c->end && conn_fill(c) <= 0)
		return -1;
	return (unsigned char)c->buf[c->start++];
}

/* Make input available: a pointer to it and its length, or NULL when the
 * peer is gone.  The caller consumes what it uses with conn_consume(). */
static const char *conn_avail(struct conn *c, size_t *len)
{
	if (c->start == c->end && conn_fill(c) <= 0)
		return NULL;
	*len = c->end - c->start;
	return c->buf + c->start;
}

static void conn_consume(struct conn *c, size_t n)
{
	c->start += n;
}

/* Read a line without its CRLF into buf. */
static enum rd conn_getline(struct conn *c, char *buf, size_t cap)
{
	size_t n = 0;

	for (;;) {
		int ch = conn_getc(c);

		if (ch < 0)
			return RD_GONE;
		if (ch == '\n')
			break;
		if (n + 1 >= cap)
			return RD_BAD;
		buf[n++] = (char)ch;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return RD_OK;
}

/* Send everything or mark the peer gone. */
static bool send_all(struct conn *c, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t k = send(c->fd, p, len, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			c->peer_gone = true;
			return false;
		}
		p += k;
		len -= (size_t)k;
	}
	return true;
}

/* Wait ms milliseconds unless the peer hangs up first; false if it did. */
static bool wait_peer(struct conn *c, int64_t ms)
{
	int64_t end = now_us() + ms * 1000;

	for (;;) {
		int64_t left = end - now_us();
		struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };
		int n;

		if (left <= 0)
			return true;
		n = poll(&p, 1, (int)((left + 999) / 1000));
		if (n < 0 && errno != EINTR)
			return true;
		if (n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
			c->peer_gone = true;
			return false;
		}
	}
}

/* ---- request parsing ---- */

/* Read the request head (through the empty line) into a new buffer.
 * 1: got one; 0: clean EOF before any byte; -1: peer gone; -2: bad. */
static int read_head(struct conn *c, char **out)
{
	char *head = malloc(HEAD_MAX + 1);
	size_t n = 0;

	if (!head)
		return -2;
	for (;;) {
		int ch = conn_getc(c);

		if (ch < 0) {
			free(head);
			return n == 0 ? 0 : -1;
		}
		if (n == 0 && (ch == '\r' || ch == '\n'))
			continue; /* stray CRLF between requests */
		if (n >= HEAD_MAX) {
			free(head);
			return -2;
		}
		head[n++] = (char)ch;
		if (n >= 2 && head[n - 1] == '\n' &&
		    (head[n - 2] == '\n' || (n >= 3 && head[n - 2] == '\r' && head[n - 3] == '\n')))
			break;
	}
	head[n] = '\0';
	*out = head;
	return 1;
}

/* Split off the next line of the head, CRLF or LF terminated. */
static char *next_line(char **cursor)
{
	char *line = *cursor;
	char *nl = strchr(line, '\n');

	if (!nl)
		return NULL;
	*nl = '\0';
	if (nl > line && nl[-1] == '\r')
		nl[-1] = '\0';
	*cursor = nl + 1;
	return line;
}

static char *trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* The value of the first header called name (lower-case), or NULL. */
static const char *get_header(const struct request *r, const char *name)
{
	for (size_t i = 0; i < r->nh; i++)
		if (strcmp(r->h[i].name, name) == 0)
			return r->h[i].value;
	return NULL;
}

/* Whether the comma-separated list v contains token tok (case-insensitive). */
static bool has_token(const char *v, const char *tok)
{
	size_t tlen = strlen(tok);

	while (v && *v) {
		const char *comma = strchr(v, ',');
		size_t len = comma ? (size_t)(comma - v) : strlen(v);

		while (len > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			len--;
		}
		while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
			len--;
		if (len == tlen && strncasecmp(v, tok, tlen) == 0)
			return true;
		v = comma ? comma + 1 : NULL;
	}
	return false;
}

/* Parse "METHOD TARGET HTTP/1.x"; returns the minor version or -1. */
static int parse_request_line(struct request *r, char *line)
{
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	char *q;

	if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1)
		return -1;
	*sp1 = '\0';
	*sp2 = '\0';
	r->method = line;
	r->target = sp1 + 1;
	r->path = strdup(r->target);
	if (!r->path)
		return -1;
	q = strchr(r->path, '?');
	if (q)
		*q = '\0';
	q = strchr(r->target, '?');
	r->query = q ? q + 1 : "";
	if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
		return 1;
	if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
		return 0;
	return -1;
}

/* Parse one "name: value" line into the next header slot. */
static bool parse_header_line(struct request *r, char *line)
{
	char *colon = strchr(line, ':');

	if (!colon || colon == line || r->nh >= MAX_HEADERS)
		return false;
	*colon = '\0';
	for (char *p = line; *p; p++) {
		if (*p == ' ' || *p == '\t')
			return false;
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	r->h[r->nh].name = line;
	r->h[r->nh].value = trim(colon + 1);
	r->nh++;
	return true;
}

/* Work out framing and persistence from the parsed headers. */
static bool apply_headers(struct request *r, int minor)
{
	const char *cl = get_header(r, "content-length");
	const char *te = get_header(r, "transfer-encoding");
	const char *conn = get_header(r, "connection");
	const char *expect = get_header(r, "expect");
	long long v;

	r->content_length = -1;
	if (te) {
		if (cl || strcasecmp(te, "chunked") != 0)
			return false;
		r->chunked = true;
	} else if (cl) {
		if (!parse_long(cl, 0, LLONG_MAX, &v))
			return false;
		r->content_length = v;
	}
	if (minor == 1)
		r->keep_alive = !has_token(conn, "close");
	else
		r->keep_alive = has_token(conn, "keep-alive");
	r->head_only = strcmp(r->method, "HEAD") == 0;
	r->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
	return true;
}

/* Emit the request and header events. */
static void emit_request(const struct conn *c, const struct request *r)
{
	char *target = encode(r->target, true), *raw = hex(r->target);

	emit("ev=request conn=%ld req=%ld method=%s path=%s raw=%s", c->id, r->id,
	     r->method, target ? target : "-", raw ? raw : "-");
	free(target);
	free(raw);
	for (size_t i = 0; i < r->nh; i++) {
		char *value = encode(r->h[i].value, false);

		emit("ev=header conn=%ld req=%ld name=%s value=%s", c->id, r->id,
		     r->h[i].name, value ? value : "");
		free(value);
	}
	emit("ev=headers_end conn=%ld req=%ld", c->id, r->id);
}

/* Parse the head text into r; false if malformed. */
static bool parse_head(struct request *r, char *head)
{
	char *cursor = head;
	char *line = next_line(&cursor);
	int minor;

	r->head = head;
	if (!line)
		return false;
	minor = parse_request_line(r, line);
	if (minor < 0)
		return false;
	for (line = next_line(&cursor); line && *line; line = next_line(&cursor))
		if (!parse_header_line(r, line))
			return false;
	return apply_headers(r, minor);
}

/* ---- request bodies ---- */

/* Store (when keep) or count len bytes of body. */
static bool body_take(struct request *r, const char *data, size_t len, bool keep)
{
	if (keep) {
		if ((int64_t)(r->body_len + len) > MAX_ECHO)
			return false;
		if (r->body_len + len > r->body_cap) {
			size_t cap = r->body_cap ? r->body_cap : 65536;
			char *nb;

			while (cap < r->body_len + len)
				cap *= 2;
			nb = realloc(r->body, cap);
			if (!nb)
				return false;
			r->body = nb;
			r->body_cap = cap;
		}
		memcpy(r->body + r->body_len, data, len);
	}
	r->body_len += len;
	return true;
}

/* With a read rate, sleep until the body bytes taken so far are due. */
static void throttle(const struct request *r, int64_t since_us)
{
	int64_t due, ahead;

	if (r->read_rate <= 0)
		return;
	due = since_us + (int64_t)((double)r->body_len * 1e6 / (double)r->read_rate);
	ahead = due - now_us();
	if (ahead > 0) {
		struct timespec ts = { .tv_sec = ahead / 1000000,
				       .tv_nsec = (ahead % 1000000) * 1000 };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

/* Read exactly n body bytes (at r->read_rate when set). */
static enum rd read_fixed(struct conn *c, struct request *r, uint64_t n, bool keep)
{
	int64_t since = r->start_us;

	while (n > 0) {
		size_t avail;
		const char *data = conn_avail(c, &avail);

		if (!data)
			return RD_GONE;
		if (avail > n)
			avail = (size_t)n;
		if (r->read_rate > 0 && avail > 4096)
			avail = 4096;
		if (!body_take(r, data, avail, keep))
			return RD_BAD;
		conn_consume(c, avail);
		n -= avail;
		throttle(r, since);
	}
	return RD_OK;
}

/* Read a chunked body, trailers included. */
static enum rd read_chunked(struct conn *c, struct request *r, bool keep)
{
	char line[LINE_MAX_LEN];
	enum rd rc;

	for (;;) {
		char *end;
		unsigned long long size;

		rc = conn_getline(c, line, sizeof line);
		if (rc != RD_OK)
			return rc;
		errno = 0;
		size = strtoull(line, &end, 16);
		if (errno || end == line || (*end && *end != ';' && *end != ' '))
			return RD_BAD;
		if (size == 0)
			break;
		rc = read_fixed(c, r, size, keep);
		if (rc != RD_OK)
			return rc;
		rc = conn_getline(c, line, sizeof line);
		if (rc != RD_OK)
			return rc;
		if (line[0])
			return RD_BAD;
	}
	do {
		rc = conn_getline(c, line, sizeof line);
	} while (rc == RD_OK && line[0]);
	return rc;
}

/* Read the whole request body (storing it when keep). */
static enum rd read_body(struct conn *c, struct request *r, bool keep)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	bool has_body = r->chunked || r->content_length > 0;

	if (has_body && r->expect_continue && !send_all(c, cont, sizeof cont - 1))
		return RD_GONE;
	if (r->chunked)
		return read_chunked(c, r, keep);
	if (r->content_length > 0)
		return read_fixed(c, r, (uint64_t)r->content_length, keep);
	return RD_OK;
}

/* ---- responses ---- */

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

static void emit_cancelled(const struct conn *c, const struct request *r, const char *phase)
{
	emit("ev=cancelled conn=%ld req=%ld after_ms=%" PRId64 " phase=%s", c->id, r->id,
	     (now_us() - r->start_us) / 1000, phase);
}

/* Send the status line and headers, the CRLF-terminated field lines of
 * extra among them; clen < 0 means chunked. */
static bool send_head_extra(struct conn *c, const struct request *r, int status, int64_t clen,
			    bool close_after, const char *extra)
{
	size_t cap = strlen(extra) + 512;
	char *head = malloc(cap);
	char framing[64];
	bool no_body = status == 204 || status == 304 || status < 200;
	bool ok;
	int n;

	if (no_body)
		framing[0] = '\0';
	else if (clen < 0)
		snprintf(framing, sizeof framing, "Transfer-Encoding: chunked\r\n");
	else
		snprintf(framing, sizeof framing, "Content-Length: %" PRId64 "\r\n", clen);
	n = head ? snprintf(head, cap,
			    "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n%s%s%sConnection: %s\r\n\r\n",
			    status, reason(status), framing, name_field, extra,
			    close_after || !r->keep_alive ? "close" : "keep-alive")
		 : -1;
	ok = n >= 0 && (size_t)n < cap && send_all(c, head, (size_t)n);
	free(head);
	if (!ok) {
		emit_cancelled(c, r, "before_response");
		return false;
	}
	emit("ev=response conn=%ld req=%ld status=%d", c->id, r->id, status);
	return true;
}

/* Send the status line and headers; clen < 0 means chunked. */
static bool send_head(struct conn *c, const struct request *r, int status, int64_t clen,
		      bool close_after)
{
	return send_head_extra(c, r, status, clen, close_after, "");
}

/* Send a body piece unless this is a HEAD request. */
static bool send_body(struct conn *c, const struct request *r, const void *data, size_t len)
{
	if (r->head_only || len == 0)
		return true;
	if (send_all(c, data, len))
		return true;
	emit_cancelled(c, r, "sending_body");
	return false;
}

static enum outcome finish(const struct conn *c, const struct request *r, int64_t bytes,
			   bool close_after)
{
	emit("ev=done conn=%ld req=%ld bytes=%" PRId64, c->id, r->id, bytes);
	return close_after || !r->keep_alive ? OUT_CLOSE : OUT_KEEP;
}

/* A complete response with a fixed body. */
static enum outcome respond(struct conn *c, const struct request *r, int status,
			    const char *body, size_t len, bool close_after)
{
	bool no_body = status == 204 || status == 304;

	if (no_body)
		len = 0;
	if (!send_head(c, r, status, (int64_t)len, close_after))
		return OUT_GONE;
	if (!send_body(c, r, body, len))
		return OUT_GONE;
	return finish(c, r, (int64_t)len, close_after);
}

static enum outcome respond_str(struct conn *c, const struct request *r, int status,
				const char *body)
{
	return respond(c, r, status, body, strlen(body), false);
}

/* Send one chunk of a chunked body. */
static bool send_chunk(struct conn *c, const struct request *r, const char *data, size_t len)
{
	char size[32];
	int n = snprintf(size, sizeof size, "%zx\r\n", len);

	return send_body(c, r, size, (size_t)n) && send_body(c, r, data, len) &&
	       send_body(c, r, "\r\n", 2);
}

/* Send the body bytes [off, off + len) of the /bytes pattern. */
static bool send_pattern(struct conn *c, const struct request *r, int64_t off, int64_t len)
{
	while (len > 0) {
		size_t piece = len < BYTES_PIECE ? (size_t)len : BYTES_PIECE;

		if (!send_body(c, r, pattern + off % 251, piece))
			return false;
		off += (int64_t)piece;
		len -= (int64_t)piece;
	}
	return true;
}

/* A head written as is (status line and fields through the empty line). */
static bool send_raw_head(struct conn *c, const struct request *r, const char *head, size_t len,
			  int status)
{
	if (!send_all(c, head, len)) {
		emit_cancelled(c, r, "before_response");
		return false;
	}
	emit("ev=response conn=%ld req=%ld status=%d", c->id, r->id, status);
	return true;
}

/* ---- endpoints ---- */

/* Wait ms before answering; false, after an ev=cancelled, if the peer went. */
static bool wait_before_response(struct conn *c, const struct request *r, long long ms)
{
	if (wait_peer(c, ms))
		return true;
	emit_cancelled(c, r, "before_response");
	return false;
}

static enum outcome h_slow(struct conn *c, const struct request *r)
{
	long long ms = query_num(r->query, "ms", 1000, 0, MAX_WAIT_MS);

	if (!wait_before_response(c, r, ms))
		return OUT_GONE;
	return respond_str(c, r, 200, "slow done\n");
}

/* /hang and -m hang: no answer; the backend gives up after HANG_CAP_MS. */
static enum outcome h_hang(struct conn *c, const struct request *r)
{
	if (!wait_before_response(c, r, HANG_CAP_MS))
		return OUT_GONE;
	return OUT_CLOSE;
}

static enum outcome h_stream(struct conn *c, const struct request *r)
{
	long long chunks = query_num(r->query, "chunks", 10, 0, 10000000);
	long long size = query_num(r->query, "size", 10, 1, MAX_CHUNK);
	long long interval = query_num(r->query, "interval_ms", 100, 0, MAX_WAIT_MS);
	char *data = malloc((size_t)size);
	enum outcome out = OUT_GONE;

	if (!data)
		return respond_str(c, r, 500, "out of memory\n");
	memset(data, 'x', (size_t)size);
	if (!send_head(c, r, 200, -1, false))
		goto done;
	for (long long i = 0; i < chunks; i++) {
		if (!send_chunk(c, r, data, (size_t)size))
			goto done;
		if (i + 1 < chunks && !wait_peer(c, interval)) {
			emit_cancelled(c, r, "sending_body");
			goto done;
		}
	}
	if (send_body(c, r, "0\r\n\r\n", 5))
		out = finish(c, r, chunks * size, false);
done:
	free(data);
	return out;
}

static enum outcome h_idle(struct conn *c, const struct request *r)
{
	long long ms = query_num(r->query, "after_ms", 1000, 0, MAX_WAIT_MS);

	if (!send_head(c, r, 200, -1, false) || !send_chunk(c, r, "hello", 5))
		return OUT_GONE;
	if (!wait_peer(c, ms)) {
		emit_cancelled(c, r, "sending_body");
		return OUT_GONE;
	}
	if (!send_body(c, r, "0\r\n\r\n", 5))
		return OUT_GONE;
	return finish(c, r, 5, false);
}

static enum outcome h_bytes(struct conn *c, const struct request *r)
{
	long long n = query_num(r->query, "n", 0, 0, (long long)1 << 40);
	long long sent = 0;

	if (!send_head(c, r, 200, n, false))
		return OUT_GONE;
	while (sent < n) {
		size_t piece = n - sent < BYTES_PIECE ? (size_t)(n - sent) : BYTES_PIECE;

		if (!send_body(c, r, pattern + sent % 251, piece))
			return OUT_GONE;
		sent += (long long)piece;
	}
	return finish(c, r, n, false);
}

static enum outcome h_upload(struct conn *c, const struct request *r)
{
	char msg[64];

	snprintf(msg, sizeof msg, "got %zu\n", r->body_len);
	return respond_str(c, r, 200, msg);
}

/* Status code with the body "status C\n" (/status, -m status=C, /healthz). */
static enum outcome respond_status(struct conn *c, const struct request *r, long long code)
{
	char msg[64];

	snprintf(msg, sizeof msg, "status %lld\n", code);
	return respond_str(c, r, (int)code, msg);
}

static enum outcome h_status(struct conn *c, const struct request *r)
{
	return respond_status(c, r, query_num(r->query, "code", 200, 200, 599));
}

static enum outcome h_healthz(struct conn *c, const struct request *r)
{
	int code = atomic_load(&health_code);

	if (code == 200)
		return respond_str(c, r, 200, "ok\n");
	return respond_status(c, r, code);
}

static enum outcome h_set_health(struct conn *c, const struct request *r)
{
	atomic_store(&health_code, (int)query_num(r->query, "code", 200, 200, 599));
	return respond_str(c, r, 200, "set\n");
}

static enum outcome h_headers(struct conn *c, const struct request *r)
{
	size_t cap = 1, len = 0;
	char *body;
	enum outcome out;

	for (size_t i = 0; i < r->nh; i++)
		cap += strlen(r->h[i].name) + strlen(r->h[i].value) + 3;
	body = malloc(cap);
	if (!body)
		return respond_str(c, r, 500, "out of memory\n");
	body[0] = '\0';
	for (size_t i = 0; i < r->nh; i++) {
		int n = snprintf(body + len, cap - len, "%s: %s\n", r->h[i].name, r->h[i].value);

		if (n > 0)
			len += (size_t)n;
	}
	out = respond(c, r, 200, body, len, false);
	free(body);
	return out;
}

#define BAD(name, status, rest) { name, status, rest, sizeof rest - 1 }

/* Responses a proxy must refuse, by number (1-based) or name: the status
 * line, then the fields and body.  Each declares a framing, so a lenient
 * parser would take it for a whole response on a reusable connection. */
static const struct bad_response {
	const char *name;
	const char *status;
	const char *rest;
	size_t rest_len; /* rest may hold a NUL */
} bad_responses[] = {
	/* 1 */ BAD("two_cl", "HTTP/1.1 200 OK", "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
	/* 2 */ BAD("cl_te", "HTTP/1.1 200 OK",
		    "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"),
	/* 3 */ BAD("bad_cl", "HTTP/1.1 200 OK", "Content-Length: 4x\r\n\r\nabcd"),
	/* 4 */ BAD("obs_fold", "HTTP/1.1 200 OK",
		    "Content-Length: 4\r\nX-A: a\r\n X-Folded: 1\r\n\r\nabcd"),
	/* 5 */ BAD("space_colon", "HTTP/1.1 200 OK", "X-Bad : a\r\nContent-Length: 4\r\n\r\nabcd"),
	/* 6 */ BAD("bad_status", "HTTP/1.1 2x0 OK", "Content-Length: 4\r\n\r\nabcd"),
	/* 7 */ BAD("http2", "HTTP/2.0 200 OK", "Content-Length: 4\r\n\r\nabcd"),
	/* 8 */ BAD("bad_chunk", "HTTP/1.1 200 OK",
		    "Transfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n"),
	/* 9 */ BAD("chunk_no_crlf", "HTTP/1.1 200 OK",
		    "Transfer-Encoding: chunked\r\n\r\n4\r\nabcdXX\r\n0\r\n\r\n"),
	/* 10 */ BAD("nul_value", "HTTP/1.1 200 OK", "X-A: a\0b\r\nContent-Length: 4\r\n\r\nabcd"),
};

#define N_BAD ((long long)(sizeof bad_responses / sizeof bad_responses[0]))

/* /badframe and /badresp: one of bad_responses (kind=N or kind=NAME,
 * default 1).  Connection: close and a close after it, unless keep=1. */
static enum outcome h_badframe(struct conn *c, const struct request *r)
{
	const struct bad_response *b = NULL;
	bool keep = query_num(r->query, "keep", 0, 0, 1) == 1;
	char head[192];
	int n;

	for (long long i = 0; i < N_BAD && !b; i++)
		if (query_is(r->query, "kind", bad_responses[i].name))
			b = &bad_responses[i];
	if (!b)
		b = &bad_responses[query_num(r->query, "kind", 1, 1, N_BAD) - 1];
	n = snprintf(head, sizeof head, "%s\r\n%s%s", b->status, name_field,
		     keep ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n >= sizeof head || !send_all(c, head, (size_t)n) ||
	    !send_all(c, b->rest, b->rest_len))
		return OUT_GONE;
	emit("ev=response conn=%ld req=%ld status=200", c->id, r->id);
	return finish(c, r, 4, !keep);
}

static enum outcome h_interim(struct conn *c, const struct request *r)
{
	long long n = query_num(r->query, "n", 1, 0, 100);
	long long st = query_num(r->query, "status", 103, 100, 199);
	const char *why = st == 100 ? "Continue" : st == 102 ? "Processing"
			: st == 103 ? "Early Hints" : "Informational";
	char head[160];
	int len = snprintf(head, sizeof head, "HTTP/1.1 %lld %s\r\n%s\r\n", st, why,
			   st == 103 ? "Link: </x>; rel=preload\r\n" : "");

	for (long long i = 0; i < n; i++) {
		if (len < 0 || (size_t)len >= sizeof head || !send_all(c, head, (size_t)len)) {
			emit_cancelled(c, r, "before_response");
			return OUT_GONE;
		}
		emit("ev=interim conn=%ld req=%ld status=%lld", c->id, r->id, st);
	}
	return respond_str(c, r, 200, "ok\n");
}

static enum outcome h_chunked(struct conn *c, const struct request *r)
{
	long long chunks = query_num(r->query, "chunks", 3, 0, 1000000);
	long long size = query_num(r->query, "size", 10, 1, MAX_CHUNK);
	bool ext = query_num(r->query, "ext", 0, 0, 1) == 1;
	bool trailers = query_num(r->query, "trailers", 0, 0, 1) == 1;
	bool upper = query_is(r->query, "hex", "upper");
	const char *exts = ext ? ";a=b;q=\"x;y\"" : "";
	char line[128];
	int n;

	if (!send_head_extra(c, r, 200, -1, false, trailers ? "Trailer: X-Trailer, X-Sum\r\n" : ""))
		return OUT_GONE;
	for (long long i = 0; i < chunks; i++) {
		n = snprintf(line, sizeof line, upper ? "%llX%s\r\n" : "%llx%s\r\n", size, exts);
		if (!send_body(c, r, line, (size_t)n) || !send_pattern(c, r, i * size, size) ||
		    !send_body(c, r, "\r\n", 2))
			return OUT_GONE;
	}
	n = snprintf(line, sizeof line, "0%s\r\n", exts);
	if (!send_body(c, r, line, (size_t)n))
		return OUT_GONE;
	if (trailers) {
		n = snprintf(line, sizeof line, "X-Trailer: t1\r\nX-Sum: %lld\r\n", chunks * size);
		if (!send_body(c, r, line, (size_t)n))
			return OUT_GONE;
	}
	if (!send_body(c, r, "\r\n", 2))
		return OUT_GONE;
	return finish(c, r, r->head_only ? 0 : chunks * size, false);
}

static enum outcome h_nobody(struct conn *c, const struct request *r)
{
	long long code = query_num(r->query, "code", 304, 100, 599);
	long long cl = query_num(r->query, "cl", 100, -1, (long long)1 << 40);
	bool te = query_num(r->query, "te", 0, 0, 1) == 1;
	char framing[64] = "";
	char head[384];
	int n;

	if (te)
		snprintf(framing, sizeof framing, "Transfer-Encoding: chunked\r\n");
	else if (cl >= 0)
		snprintf(framing, sizeof framing, "Content-Length: %lld\r\n", cl);
	n = snprintf(head, sizeof head, "HTTP/1.1 %lld %s\r\nContent-Type: text/plain\r\n%s%s"
		     "Connection: %s\r\n\r\n", code, reason((int)code), framing, name_field,
		     r->keep_alive ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= sizeof head || !send_raw_head(c, r, head, (size_t)n, (int)code))
		return OUT_GONE;
	return finish(c, r, 0, false);
}

static enum outcome h_split(struct conn *c, const struct request *r)
{
	long long n = query_num(r->query, "n", 100, 0, 1 << 24);
	long long piece = query_num(r->query, "piece", 1, 1, 1 << 20);
	long long delay = query_num(r->query, "delay_ms", 1, 0, 10000);
	char head[384];
	int hl = snprintf(head, sizeof head,
			  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
			  "X-Split: piece=%lld\r\n%sContent-Length: %lld\r\nConnection: %s\r\n\r\n",
			  piece, name_field, n, r->keep_alive ? "keep-alive" : "close");
	size_t total = (size_t)hl + (r->head_only ? 0 : (size_t)n);
	char *buf = malloc(total);
	bool announced = false;

	if (!buf || hl < 0 || (size_t)hl >= sizeof head) {
		free(buf);
		return respond_str(c, r, 500, "out of memory\n");
	}
	memcpy(buf, head, (size_t)hl);
	for (size_t i = (size_t)hl; i < total; i++)
		buf[i] = (char)((i - (size_t)hl) % 251);
	for (size_t off = 0; off < total;) {
		size_t k = total - off < (size_t)piece ? total - off : (size_t)piece;
		const char *phase = off < (size_t)hl ? "before_response" : "sending_body";

		if (!send_all(c, buf + off, k)) {
			emit_cancelled(c, r, phase);
			free(buf);
			return OUT_GONE;
		}
		off += k;
		if (!announced && off >= (size_t)hl) {
			emit("ev=response conn=%ld req=%ld status=200", c->id, r->id);
			announced = true;
		}
		if (off < total && !wait_peer(c, delay)) {
			emit_cancelled(c, r, phase);
			free(buf);
			return OUT_GONE;
		}
	}
	free(buf);
	return finish(c, r, r->head_only ? 0 : n, false);
}

/* /untilclose and /http10: a body delimited by the close alone. */
static enum outcome h_until_close(struct conn *c, const struct request *r, bool http10)
{
	long long n = query_num(r->query, "n", 100, 0, (long long)1 << 40);
	char head[256];
	int hl = snprintf(head, sizeof head, "HTTP/1.%d 200 OK\r\nContent-Type: text/plain\r\n"
			  "%s%s\r\n", http10 ? 0 : 1, name_field,
			  http10 ? "" : "Connection: close\r\n");

	if (hl < 0 || (size_t)hl >= sizeof head || !send_raw_head(c, r, head, (size_t)hl, 200))
		return OUT_GONE;
	if (!send_pattern(c, r, 0, n)) {
		emit_cancelled(c, r, "sending_body");
		return OUT_GONE;
	}
	return finish(c, r, r->head_only ? 0 : n, true);
}

static enum outcome h_drop_next(struct conn *c, const struct request *r, int how)
{
	c->drop_next = how;
	return respond_str(c, r, 200, "ok\n");
}

static enum outcome h_big_head(struct conn *c, const struct request *r)
{
	long long n = query_num(r->query, "n", 16384, 0, 1 << 24);
	long long field = query_num(r->query, "field", 1000, 20, 1 << 20);
	size_t cap = (size_t)n + (size_t)field + 64, len = 0;
	char *extra = malloc(cap);

	if (!extra)
		return respond_str(c, r, 500, "out of memory\n");
	for (long long i = 0; (long long)len < n; i++) {
		int k = snprintf(extra + len, cap - len, "X-Pad-%04lld: ", i);
		size_t vlen = (size_t)field - (size_t)k - 2;

		len += (size_t)k;
		memset(extra + len, 'v', vlen);
		len += vlen;
		memcpy(extra + len, "\r\n", 2);
		len += 2;
	}
	extra[len] = '\0';
	if (!send_head_extra(c, r, 200, 3, false, extra)) {
		free(extra);
		return OUT_GONE;
	}
	free(extra);
	if (!send_body(c, r, "ok\n", 3))
		return OUT_GONE;
	return finish(c, r, 3, false);
}

/* Dispatch on the path; the body has been read already. */
static enum outcome route(struct conn *c, const struct request *r)
{
	const char *p = r->path;

	if (strcmp(p, "/fast") == 0)
		return respond_str(c, r, 200, "ok\n");
	if (strcmp(p, "/slow") == 0)
		return h_slow(c, r);
	if (strcmp(p, "/hang") == 0)
		return h_hang(c, r);
	if (strcmp(p, "/stream") == 0)
		return h_stream(c, r);
	if (strcmp(p, "/idle") == 0)
		return h_idle(c, r);
	if (strcmp(p, "/bytes") == 0)
		return h_bytes(c, r);
	if (strcmp(p, "/echo") == 0)
		return respond(c, r, 200, r->body ? r->body : "", r->body_len, false);
	if (strcmp(p, "/upload") == 0)
		return h_upload(c, r);
	if (strcmp(p, "/status") == 0)
		return h_status(c, r);
	if (strcmp(p, "/headers") == 0)
		return h_headers(c, r);
	if (strcmp(p, "/close") == 0)
		return respond(c, r, 200, "bye\n", 4, true);
	if (strcmp(p, "/badframe") == 0 || strcmp(p, "/badresp") == 0)
		return h_badframe(c, r);
	if (strcmp(p, "/interim") == 0)
		return h_interim(c, r);
	if (strcmp(p, "/chunked") == 0)
		return h_chunked(c, r);
	if (strcmp(p, "/nobody") == 0)
		return h_nobody(c, r);
	if (strcmp(p, "/split") == 0)
		return h_split(c, r);
	if (strcmp(p, "/untilclose") == 0)
		return h_until_close(c, r, false);
	if (strcmp(p, "/http10") == 0)
		return h_until_close(c, r, true);
	if (strcmp(p, "/drop-next") == 0)
		return h_drop_next(c, r, DROP_FIN);
	if (strcmp(p, "/reset-next") == 0)
		return h_drop_next(c, r, DROP_RST);
	if (strcmp(p, "/big-head") == 0)
		return h_big_head(c, r);
	if (strcmp(p, "/slowread") == 0)
		return respond(c, r, 200, r->body ? r->body : "", r->body_len, false);
	if (strcmp(p, "/healthz") == 0)
		return h_healthz(c, r);
	if (strcmp(p, "/set-health") == 0)
		return h_set_health(c, r);
	return respond_str(c, r, 404, "not found\n");
}

/* Whether -m applies to r: never to the health endpoints. */
static bool mode_applies(const struct request *r)
{
	return mode != MODE_NORMAL && strcmp(r->path, "/healthz") != 0 &&
	       strcmp(r->path, "/set-health") != 0;
}

/* What -m arranges for r: DROP_RST, DROP_FIN or DROP_NONE. */
static int mode_drop(const struct request *r)
{
	if (!mode_applies(r))
		return DROP_NONE;
	return mode == MODE_RESET ? DROP_RST : mode == MODE_FIN ? DROP_FIN : DROP_NONE;
}

/* Answer r as -m says, its body read already (the drop modes never get here). */
static enum outcome misbehave(struct conn *c, const struct request *r)
{
	switch (mode) {
	case MODE_HANG:
		return h_hang(c, r);
	case MODE_STATUS:
		return respond_status(c, r, mode_arg);
	case MODE_SLOWHEAD:
		if (!wait_before_response(c, r, mode_arg))
			return OUT_GONE;
		return route(c, r);
	default:
		return route(c, r);
	}
}

/* Read the body, then answer. */
static enum outcome handle(struct conn *c, struct request *r)
{
	bool slow = strcmp(r->path, "/slowread") == 0;
	bool keep = slow || strcmp(r->path, "/echo") == 0;
	enum rd rc;

	if (slow)
		r->read_rate = query_num(r->query, "rate", 1 << 20, 1024, (long long)1 << 40);
	rc = read_body(c, r, keep);

	if (rc == RD_GONE) {
		emit_cancelled(c, r, "reading_body");
		return OUT_GONE;
	}
	if (rc == RD_BAD) {
		respond(c, r, 400, "bad body\n", 9, true);
		return OUT_CLOSE;
	}
	emit("ev=body_done conn=%ld req=%ld bytes=%zu", c->id, r->id, r->body_len);
	return mode_applies(r) ? misbehave(c, r) : route(c, r);
}

/* The request after a /drop-next or /reset-next, or any under -m reset or
 * -m fin: read it all, answer nothing, close (with a RST for how DROP_RST). */
static enum outcome drop(struct conn *c, struct request *r, int how)
{
	enum rd rc = read_body(c, r, false);

	if (rc == RD_GONE) {
		emit_cancelled(c, r, "reading_body");
		return OUT_GONE;
	}
	emit("ev=body_done conn=%ld req=%ld bytes=%zu", c->id, r->id, r->body_len);
	emit("ev=dropped conn=%ld req=%ld method=%s how=%s", c->id, r->id, r->method,
	     how == DROP_RST ? "rst" : "fin");
	c->reset = how == DROP_RST;
	c->drop_next = DROP_NONE;
	return OUT_CLOSE;
}

static void request_free(struct request *r)
{
	free(r->head);
	free(r->path);
	free(r->body);
}

/* Reject a malformed head: 400, then close. */
static void reject(struct conn *c, int status)
{
	char msg[256];
	int n = snprintf(msg, sizeof msg,
			 "HTTP/1.1 %d %s\r\nContent-Length: 4\r\n%sConnection: close\r\n\r\nbad\n",
			 status, reason(status), name_field);

	if (n > 0 && (size_t)n < sizeof msg)
		send_all(c, msg, (size_t)n);
}

/* Serve requests until the connection ends; true if we close it. */
static bool serve(struct conn *c)
{
	for (;;) {
		struct request r;
		char *head = NULL;
		int rc = read_head(c, &head);
		enum outcome out;
		int how;

		if (rc == 0 || rc == -1)
			return false;
		if (rc == -2) {
			reject(c, 431);
			return true;
		}
		memset(&r, 0, sizeof r);
		r.id = atomic_fetch_add(&next_req, 1);
		r.start_us = now_us();
		if (!parse_head(&r, head)) {
			request_free(&r);
			reject(c, 400);
			return true;
		}
		emit_request(c, &r);
		how = c->drop_next != DROP_NONE ? c->drop_next : mode_drop(&r);
		out = how != DROP_NONE ? drop(c, &r, how) : handle(c, &r);
		request_free(&r);
		if (out == OUT_GONE)
			return false;
		if (out == OUT_CLOSE)
			return true;
	}
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	bool by_self;

	emit("ev=open conn=%ld peer=%s", c->id, c->peer);
	by_self = serve(c);
	if (by_self && c->reset) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	} else if (by_self) {
		shutdown(c->fd, SHUT_WR);
	}
	close(c->fd);
	emit("ev=close conn=%ld by=%s", c->id, by_self ? "self" : "peer");
	free(c);
	return NULL;
}

/* Set up the state for an accepted socket and start its thread. */
static void start_conn(int fd, const struct sockaddr_in *sa)
{
	struct conn *c = calloc(1, sizeof *c);
	char ip[INET_ADDRSTRLEN];
	pthread_attr_t attr;
	pthread_t tid;
	int one = 1;

	if (!c) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->id = atomic_fetch_add(&next_conn, 1);
	if (!inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip))
		snprintf(ip, sizeof ip, "?");
	snprintf(c->peer, sizeof c->peer, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, conn_main, c) != 0) {
		close(fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

/* Bind 127.0.0.1:port and listen; returns the socket and the bound port. */
static int listen_on(int port, int *bound)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	socklen_t len = sizeof sa;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		close(fd);
		return -1;
	}
	*bound = ntohs(sa.sin_port);
	return fd;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: backend [-p PORT] [-q] [-m MODE] [-i NAME]\n"
		   "  MODE: normal, reset, fin, hang, status=C (200-599), slowhead=MS\n");
}

/* Set the -m mode from its argument; false if it is not one. */
static bool parse_mode(const char *s)
{
	static const struct { const char *word; enum mode_kind kind; } plain[] = {
		{ "normal", MODE_NORMAL }, { "reset", MODE_RESET },
		{ "fin", MODE_FIN }, { "hang", MODE_HANG },
	};

	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
		if (strcmp(s, plain[i].word) == 0) {
			mode = plain[i].kind;
			return true;
		}
	}
	if (strncmp(s, "status=", 7) == 0 && parse_long(s + 7, 200, 599, &mode_arg)) {
		mode = MODE_STATUS;
		return true;
	}
	if (strncmp(s, "slowhead=", 9) == 0 && parse_long(s + 9, 0, MAX_WAIT_MS, &mode_arg)) {
		mode = MODE_SLOWHEAD;
		return true;
	}
	return false;
}

/* Set the -i name (the X-Backend field); false if it could break the head. */
static bool parse_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	snprintf(name_field, sizeof name_field, "X-Backend: %s\r\n", s);
	return true;
}

int main(int argc, char **argv)
{
	static const char opts[] = "p:qm:i:h";
	long long port = 0;
	int lfd, bound;

	for (int opt = getopt(argc, argv, opts); opt != -1; opt = getopt(argc, argv, opts)) {
		if (opt == 'p' && parse_long(optarg, 0, 65535, &port))
			continue;
		if ((opt == 'm' && parse_mode(optarg)) || (opt == 'i' && parse_name(optarg)))
			continue;
		if (opt == 'q') {
			quiet = true;
			continue;
		}
		usage(opt == 'h' ? stdout : stderr);
		return opt == 'h' ? 0 : 2;
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof pattern; i++)
		pattern[i] = (unsigned char)(i % 251);
	lfd = listen_on((int)port, &bound);
	if (lfd < 0) {
		fprintf(stderr, "backend: cannot listen on 127.0.0.1:%lld: %s\n", port,
			strerror(errno));
		return 2;
	}
	printf("listening port=%d\n", bound);
	fflush(stdout);
	for (;;) {
		struct sockaddr_in sa;
		socklen_t len = sizeof sa;
		int fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);

		if (fd >= 0) {
			start_conn(fd, &sa);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
			usleep(10000);
	}
}
