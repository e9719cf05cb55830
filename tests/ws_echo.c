/* ws_echo.c - WebSocket echo backend for the bench and the demo: one epoll thread, every connection event stamped on stdout. */
/*
 * usage: ws_echo [-p PORT] [-q]
 *
 * Binds 127.0.0.1:PORT (0 = the kernel picks), prints "listening port=N",
 * then one line per event (none with -q).  Any request target is served:
 * a GET asking for `Upgrade: websocket` (with `Connection: upgrade` and a
 * Sec-WebSocket-Key) gets 101 with the right Sec-WebSocket-Accept (and the
 * first offered Sec-WebSocket-Protocol, if any); then every data frame is
 * echoed as it came (opcode and FIN kept, unmasked), a ping gets its pong,
 * and a close frame gets its close frame back before the backend closes.
 * Anything else gets 426 and is closed.  Bytes after the request head
 * (frames sent before the 101 arrived) are taken as frames.  Frames with
 * more than FRAME_MAX payload bytes end the connection (close code 1009).
 *
 * Event lines (t = CLOCK_MONOTONIC microseconds, taken when the event was
 * seen, so a client using the same clock can subtract):
 *   t=US ev=open conn=C peer=IP:PORT
 *   t=US ev=request conn=C method=M path=TARGET upgrade=0|1
 *   t=US ev=upgrade conn=C                    (the 101 was written)
 *   t=US ev=rejected conn=C status=S
 *   t=US ev=message conn=C opcode=O bytes=N   (a frame echoed)
 *   t=US ev=close_frame conn=C code=N         (N = 1005 when it had none)
 *   t=US ev=close conn=C by=peer how=fin|rst  (EOF / error read: the stamp
 *                                             is the time read(2) said so)
 *   t=US ev=close conn=C by=self
 * TARGET's space, '%', control and non-ASCII bytes are written as %XX.
 * The output is flushed after each batch of events, so a reader of a
 * pipe or file sees a batch at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 8192
#define FRAME_MAX 16384
#define IN_CAP (FRAME_MAX + 14)   /* a whole frame: 14 = longest frame header */
#define OUT_HIGH (256 * 1024)     /* stop reading while this much is unsent */
#define BATCH 256
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct wsconn {
	int fd;
	long id;
	bool upgraded;
	bool closing;     /* a close frame was queued: close once it is sent */
	bool want_out;    /* registered for EPOLLOUT */
	size_t in_len;
	unsigned char in[IN_CAP];
	unsigned char *out;
	size_t out_len, out_cap;
};

static bool quiet;
static long next_conn = 1;
static int epfd = -1;
/* Connections whose peer went, closed after the batch: the EOFs of a
 * batch are all stamped before any close(2) (each sends a FIN) delays
 * the next one. */
static struct wsconn *gone[BATCH];
static int ngone;

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One event line stamped now; flushed with the batch (main loop). */
static void emit(const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	printf("t=%" PRId64 " ", now_us());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ---- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept ---- */

static uint32_t rol32(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
	uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	for (int i = 0; i < 80; i++) {
		uint32_t f, k, t;

		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5A827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ED9EBA1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8F1BBCDC;
		} else {
			f = b ^ c ^ d;
			k = 0xCA62C1D6;
		}
		t = rol32(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol32(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

/* SHA-1 of msg (len < 2^29 bytes) into out[20]. */
static void sha1(const void *msg, size_t len, unsigned char out[20])
{
	uint32_t h[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
	const unsigned char *p = msg;
	unsigned char last[128];
	size_t rest = len % 64, tail;
	uint64_t bits = (uint64_t)len * 8;

	for (size_t off = 0; off + 64 <= len; off += 64)
		sha1_block(h, p + off);
	memset(last, 0, sizeof last);
	memcpy(last, p + len - rest, rest);
	last[rest] = 0x80;
	tail = rest + 1 + 8 <= 64 ? 64 : 128;
	for (int i = 0; i < 8; i++)
		last[tail - 1 - i] = (unsigned char)(bits >> (8 * i));
	sha1_block(h, last);
	if (tail == 128)
		sha1_block(h, last + 64);
	for (int i = 0; i < 20; i++)
		out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

/* Base64 of in[0..n) into out (room for 4 * ((n + 2) / 3) + 1 bytes). */
static void base64(const unsigned char *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t j = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[j++] = tab[v >> 18 & 63];
		out[j++] = tab[v >> 12 & 63];
		out[j++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
		out[j++] = i + 2 < n ? tab[v & 63] : '=';
	}
	out[j] = '\0';
}

/* Sec-WebSocket-Accept for key (RFC 6455 4.2.2) into out[29]. */
static void ws_accept(const char *key, size_t klen, char out[29])
{
	char buf[128 + sizeof WS_GUID];
	unsigned char digest[20];

	if (klen > 128)
		klen = 128;
	memcpy(buf, key, klen);
	memcpy(buf + klen, WS_GUID, sizeof WS_GUID - 1);
	sha1(buf, klen + sizeof WS_GUID - 1, digest);
	base64(digest, sizeof digest, out);
}

/* ---- connections ---- */

static void conn_close(struct wsconn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->out);
	free(c);
}

/* Make the epoll registration match what c waits for. */
static void conn_watch(struct wsconn *c)
{
	bool want_out = c->out_len > 0;
	struct epoll_event ev = { .data.ptr = c };

	if (want_out == c->want_out)
		return;
	ev.events = want_out ? EPOLLOUT : EPOLLIN;  /* no reading while behind */
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = want_out;
}

/* Send what is queued; false when the connection failed. */
static bool conn_flush(struct wsconn *c)
{
	size_t off = 0;

	while (off < c->out_len) {
		ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
	return true;
}

/* Queue bytes for sending; false on ENOMEM. */
static bool conn_queue(struct wsconn *c, const void *p, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		unsigned char *nb;

		while (cap < c->out_len + n)
			cap *= 2;
		nb = realloc(c->out, cap);
		if (!nb)
			return false;
		c->out = nb;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return true;
}

/* Queue one unmasked frame with first byte b0. */
static bool queue_frame(struct wsconn *c, unsigned char b0, const void *payload, size_t n)
{
	unsigned char h[4] = { b0 };
	size_t hl = 2;

	if (n < 126) {
		h[1] = (unsigned char)n;
	} else {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	}
	return conn_queue(c, h, hl) && conn_queue(c, payload, n);
}

/* Value of header name in head (lines after the first), or NULL; *len set. */
static const char *head_field(const char *head, const char *name, size_t *len)
{
	size_t nlen = strlen(name);
	const char *p = strstr(head, "\r\n");

	while (p && p[2] != '\r' && p[2] != '\0') {
		const char *line = p + 2, *eol = strstr(line, "\r\n");

		if (!eol)
			return NULL;
		if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
		    line[nlen] == ':') {
			const char *v = line + nlen + 1;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*len = (size_t)(eol - v);
			while (*len > 0 && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
				(*len)--;
			return v;
		}
		p = eol;
	}
	return NULL;
}

/* Whether the comma list v[0..len) holds token tok (case-insensitive). */
static bool list_has(const char *v, size_t len, const char *tok)
{
	size_t tlen = strlen(tok);
	const char *end = v ? v + len : NULL;

	while (v && v < end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *e = comma ? comma : end;

		while (v < e && (*v == ' ' || *v == '\t'))
			v++;
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - v) == tlen && strncasecmp(v, tok, tlen) == 0)
			return true;
		v = comma ? comma + 1 : NULL;
	}
	return false;
}

/* The request target, percent-encoded for an event line, into out. */
static void target_of(const char *head, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *t = strchr(head, ' ');
	size_t j = 0;

	for (t = t ? t + 1 : ""; *t && *t != ' ' && *t != '\r' && j + 4 < cap; t++) {
		unsigned char ch = (unsigned char)*t;

		if (ch > 0x20 && ch < 0x7f && ch != '%') {
			out[j++] = (char)ch;
			continue;
		}
		out[j++] = '%';
		out[j++] = hex[ch >> 4];
		out[j++] = hex[ch & 15];
	}
	out[j] = '\0';
}

/* Answer the head in c->in[0..hlen) (NUL-terminated there); false: close. */
static bool answer_head(struct wsconn *c, char *head)
{
	size_t ul = 0, cl = 0, kl = 0, pl = 0;
	const char *up = head_field(head, "Upgrade", &ul);
	const char *co = head_field(head, "Connection", &cl);
	const char *key = head_field(head, "Sec-WebSocket-Key", &kl);
	const char *proto = head_field(head, "Sec-WebSocket-Protocol", &pl);
	bool ok = strncmp(head, "GET ", 4) == 0 && list_has(up, ul, "websocket") &&
		  list_has(co, cl, "upgrade") && key && kl > 0;
	char target[1024], accept[29], resp[512];
	int n;

	target_of(head, target, sizeof target);
	emit("ev=request conn=%ld method=%.*s path=%s upgrade=%d", c->id,
	     (int)strcspn(head, " \r"), head, target, ok);
	if (!ok) {
		static const char no[] = "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n"
					 "Connection: close\r\nContent-Length: 16\r\n\r\n"
					 "websocket only\r\n";

		conn_queue(c, no, sizeof no - 1);
		conn_flush(c);
		emit("ev=rejected conn=%ld status=426", c->id);
		return false;
	}
	ws_accept(key, kl, accept);
	if (proto)
		pl = strcspn(proto, ", \t\r");
	n = snprintf(resp, sizeof resp,
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%.*s%s\r\n",
		     accept, proto ? "Sec-WebSocket-Protocol: " : "", (int)(pl > 64 ? 64 : pl),
		     proto ? proto : "", proto ? "\r\n" : "");
	if (n <= 0 || (size_t)n >= sizeof resp || !conn_queue(c, resp, (size_t)n))
		return false;
	c->upgraded = true;
	emit("ev=upgrade conn=%ld", c->id);
	return true;
}

/* Length of the complete frame at p[0..n), 0 if incomplete, -1 if too big. */
static long frame_len(const unsigned char *p, size_t n, size_t *hlen, uint64_t *plen)
{
	size_t h = 2;

	if (n < 2)
		return 0;
	*plen = p[1] & 0x7f;
	if (*plen == 126) {
		h = 4;
		if (n < h)
			return 0;
		*plen = (uint64_t)p[2] << 8 | p[3];
	} else if (*plen == 127) {
		h = 10;
		if (n < h)
			return 0;
		*plen = 0;
		for (int i = 2; i < 10; i++)
			*plen = *plen << 8 | p[i];
	}
	if (p[1] & 0x80)
		h += 4;
	if (*plen > FRAME_MAX)
		return -1;
	*hlen = h;
	return n < h + *plen ? 0 : (long)(h + *plen);
}

/* Act on one whole frame: echo, pong, or close.  False: close now. */
static bool on_frame(struct wsconn *c, unsigned char *f, size_t hlen, size_t plen)
{
	unsigned char op = f[0] & 0x0f, *pl = f + hlen;

	if (f[1] & 0x80)
		for (size_t i = 0; i < plen; i++)
			pl[i] ^= f[hlen - 4 + i % 4];
	if (op == 0x8) {
		int code = plen >= 2 ? pl[0] << 8 | pl[1] : 1005;

		emit("ev=close_frame conn=%ld code=%d", c->id, code);
		c->closing = true;
		return queue_frame(c, 0x88, pl, plen >= 2 ? 2 : 0);
	}
	if (op == 0x9)
		return queue_frame(c, 0x8a, pl, plen);
	if (op == 0xa)
		return true;
	emit("ev=message conn=%ld opcode=%d bytes=%zu", c->id, op, plen);
	return queue_frame(c, f[0], pl, plen);
}

/* Take what c->in holds: the head, then frames.  False: close now. */
static bool consume(struct wsconn *c)
{
	size_t off = 0;

	if (!c->upgraded) {
		unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);

		if (!end)
			return c->in_len < HEAD_MAX;
		end[2] = '\0';  /* the head as a string, ending in its last CRLF */
		if (!answer_head(c, (char *)c->in))
			return false;
		off = (size_t)(end - c->in) + 4;
	}
	while (!c->closing && off < c->in_len) {
		size_t hlen = 0;
		uint64_t plen = 0;
		long flen = frame_len(c->in + off, c->in_len - off, &hlen, &plen);

		if (flen < 0) {
			static const unsigned char too_big[] = { 0x03, 0xf1 }; /* 1009 */

			queue_frame(c, 0x88, too_big, 2);
			c->closing = true;
			break;
		}
		if (flen == 0)
			break;
		if (!on_frame(c, c->in + off, hlen, (size_t)plen))
			return false;
		off += (size_t)flen;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return true;
}

/* What reading left a connection in. */
enum rd { RD_OPEN, RD_PEER_GONE, RD_END };

/* Read what has arrived and act on it; RD_PEER_GONE has its event emitted. */
static enum rd conn_read(struct wsconn *c)
{
	for (;;) {
		ssize_t n;

		if (c->in_len == sizeof c->in)
			return RD_END;  /* cannot happen: a whole frame always fits */
		n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return RD_OPEN;
		if (n <= 0) {
			emit("ev=close conn=%ld by=peer how=%s", c->id, n == 0 ? "fin" : "rst");
			return RD_PEER_GONE;
		}
		c->in_len += (size_t)n;
		if (!consume(c))
			return RD_END;
		if (c->closing || c->out_len > OUT_HIGH)
			return RD_OPEN;
	}
}

/* Handle readiness of c; frees it when it ends. */
static void conn_event(struct wsconn *c, uint32_t events)
{
	enum rd st = RD_OPEN;

	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->closing && c->out_len <= OUT_HIGH)
		st = conn_read(c);
	if (st == RD_OPEN && c->out_len > 0 && !conn_flush(c)) {
		emit("ev=close conn=%ld by=peer how=rst", c->id);
		st = RD_PEER_GONE;
	}
	if (st == RD_OPEN && c->closing && c->out_len == 0)
		st = RD_END;
	if (st == RD_OPEN) {
		conn_watch(c);
		return;
	}
	if (st == RD_PEER_GONE) {
		gone[ngone++] = c;
		return;
	}
	conn_flush(c);
	shutdown(c->fd, SHUT_WR);
	emit("ev=close conn=%ld by=self", c->id);
	conn_close(c);
}

/* Accept every pending connection on lfd. */
static void accept_all(int lfd)
{
	for (;;) {
		struct sockaddr_in sa;
		socklen_t len = sizeof sa;
		int fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		struct wsconn *c;
		char ip[INET_ADDRSTRLEN];
		int one = 1;

		if (fd < 0)
			return;
		c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->fd = fd;
		c->id = next_conn++;
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		if (!inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip))
			snprintf(ip, sizeof ip, "?");
		emit("ev=open conn=%ld peer=%s:%u", c->id, ip, (unsigned)ntohs(sa.sin_port));
	}
}

/* Bind 127.0.0.1:port and listen; returns the socket and the bound port. */
static int listen_on(long port, int *bound)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	socklen_t len = sizeof sa;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		close(fd);
		return -1;
	}
	*bound = ntohs(sa.sin_port);
	return fd;
}

/* Soft RLIMIT_NOFILE up to the hard limit: the bench holds 1000s of sockets. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int parse_args(int argc, char **argv, long *port)
{
	for (int opt = getopt(argc, argv, "p:qh"); opt != -1; opt = getopt(argc, argv, "p:qh")) {
		char *end;

		if (opt == 'p') {
			errno = 0;
			*port = strtol(optarg, &end, 10);
			if (!errno && *optarg && !*end && *port >= 0 && *port <= 65535)
				continue;
		} else if (opt == 'q') {
			quiet = true;
			continue;
		}
		fprintf(opt == 'h' ? stdout : stderr, "usage: ws_echo [-p PORT] [-q]\n");
		return opt == 'h' ? 0 : 2;
	}
	return optind < argc ? 2 : -1;
}

int main(int argc, char **argv)
{
	static struct epoll_event evs[BATCH];
	long port = 0;
	int lfd, bound, rc = parse_args(argc, argv, &port);
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };

	if (rc >= 0)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	lfd = listen_on(port, &bound);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
		fprintf(stderr, "ws_echo: cannot listen on 127.0.0.1:%ld: %s\n", port,
			strerror(errno));
		return 2;
	}
	printf("listening port=%d\n", bound);
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(epfd, evs, BATCH, -1);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr)
				conn_event(evs[i].data.ptr, evs[i].events);
			else
				accept_all(lfd);
		}
		for (; ngone > 0; ngone--)
			conn_close(gone[ngone - 1]);
		fflush(stdout);
	}
}
