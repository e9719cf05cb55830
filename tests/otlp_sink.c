/* otlp_sink.c - a fast OTLP/HTTP collector stand-in for the bench: answers every export 200 at once and counts its spans without parsing. */
/*
 * usage: otlp_sink [-p PORT]
 *
 * Binds 127.0.0.1:PORT (0 = the kernel picks) and prints "listening
 * port=N" (flushed) before anything else.  One epoll thread, keep-alive
 * HTTP/1.1 with Content-Length bodies (what ctxproxy's exporter sends):
 *
 *   POST /v1/traces   the body is read and its spans counted: the number
 *                     of `"spanId":` in it (a span's own id; its parent is
 *                     "parentSpanId", and a string holding that text has
 *                     its quotes escaped), then 200 `{}`
 *   GET /stats        200 {"posts":N,"spans":N,"body_bytes":N}: totals so far
 *   anything else     404 (a chunked body: 411 and close)
 *
 * tests/otlp_collector.py parses and checks every export, for the tests;
 * this one only has to keep up with batches of 512 spans at the rate a
 * proxy at 100 % sampling makes them.  SIGTERM or SIGINT prints the
 * totals as "posts=N spans=N body_bytes=N" and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX 8192
#define IN_CAP (64 * 1024)
#define BATCH 64
#define PAT "\"spanId\":"
#define PAT_LEN (sizeof(PAT) - 1)

struct sconn {
	int fd;
	bool in_body;          /* reading a POST body */
	bool count_spans;      /* the body is an export */
	bool close_after;      /* the client said Connection: close */
	uint64_t body_left;
	size_t carry_len;      /* the body's last bytes, for a split pattern */
	char carry[PAT_LEN];
	size_t in_len;
	char in[IN_CAP];
};

static volatile sig_atomic_t stop;
static uint64_t posts, spans, body_bytes;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Count PAT in p[0, n): it does not overlap itself. */
static uint64_t count_pat(const char *p, size_t n)
{
	uint64_t k = 0;
	const char *e = p + n;
	const char *hit = memmem(p, n, PAT, PAT_LEN);

	while (hit) {
		k++;
		p = hit + PAT_LEN;
		hit = memmem(p, (size_t)(e - p), PAT, PAT_LEN);
	}
	return k;
}

/* Body bytes p[0, n): spans in them and across the previous chunk's end. */
static void body_chunk(struct sconn *c, const char *p, size_t n)
{
	char seam[2 * PAT_LEN];
	size_t head = n < PAT_LEN - 1 ? n : PAT_LEN - 1, keep;

	body_bytes += n;
	if (!c->count_spans)
		return;
	/* A match wholly in the seam's two parts (each < PAT_LEN) is
	 * impossible, so the seam counts only those that straddle. */
	memcpy(seam, c->carry, c->carry_len);
	memcpy(seam + c->carry_len, p, head);
	spans += count_pat(seam, c->carry_len + head) + count_pat(p, n);
	keep = PAT_LEN - 1;
	if (n >= keep) {
		memcpy(c->carry, p + n - keep, keep);
		c->carry_len = keep;
	} else {        /* seam holds carry + all of p */
		keep = c->carry_len + n < keep ? c->carry_len + n : keep;
		memcpy(c->carry, seam + c->carry_len + n - keep, keep);
		c->carry_len = keep;
	}
}

/* Write all of s (a few hundred bytes), waiting at most 1 s for room. */
static int send_all(int fd, const char *s, size_t n)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };

	while (n > 0) {
		ssize_t k = send(fd, s, n, MSG_NOSIGNAL);

		if (k > 0) {
			s += k;
			n -= (size_t)k;
		} else if (k < 0 && errno == EAGAIN) {
			if (poll(&pfd, 1, 1000) <= 0)
				return -ETIMEDOUT;
		} else if (k < 0 && errno != EINTR) {
			return -errno;
		}
	}
	return 0;
}

static int reply(struct sconn *c, int status, const char *body)
{
	char msg[512];
	const char *reason = status == 200 ? "OK" : status == 404 ?
		"Not Found" : status == 411 ? "Length Required" : "Bad Request";
	int n = snprintf(msg, sizeof(msg),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n%s\r\n%s", status, reason,
			 strlen(body), c->close_after ? "Connection: close\r\n" : "",
			 body);

	return send_all(c->fd, msg, (size_t)n);
}

/* The value of field name in head (CRLF lines), or NULL; *len its length. */
static const char *field(const char *head, const char *name, size_t *len)
{
	size_t nl = strlen(name);
	const char *p = strstr(head, "\r\n"), *v, *e;

	while (p && p[2] != '\0') {   /* the head ends "\r\n\0" */
		p += 2;
		e = strstr(p, "\r\n");
		if (!e)
			return NULL;
		if ((size_t)(e - p) > nl && p[nl] == ':' &&
		    strncasecmp(p, name, nl) == 0) {
			v = p + nl + 1;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			*len = (size_t)(e - v);
			return v;
		}
		p = e;
	}
	return NULL;
}

static bool field_has(const char *head, const char *name, const char *word)
{
	size_t n;
	const char *v = field(head, name, &n);

	return v && memmem(v, n, word, strlen(word)) != NULL;
}

/* A complete head (NUL-ended in place): answer it or start its body.
 * Returns 0, or < 0 to close the connection. */
static int on_head(struct sconn *c, char *head)
{
	char stats[160];
	const char *cl;
	char *end;
	size_t n;
	bool post = strncmp(head, "POST ", 5) == 0;

	c->close_after = field_has(head, "Connection", "close");
	if (field(head, "Transfer-Encoding", &n)) {
		c->close_after = true;
		reply(c, 411, "{}");
		return -EPROTO;
	}
	cl = field(head, "Content-Length", &n);
	c->body_left = 0;
	if (cl) {
		errno = 0;
		c->body_left = strtoull(cl, &end, 10);
		if (errno || end == cl || end != cl + n)
			return -EPROTO;
	}
	c->count_spans = post && strncmp(head + 5, "/v1/traces ", 11) == 0;
	if (c->count_spans && field_has(head, "Expect", "100-continue") &&
	    send_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
		return -EIO;
	if (c->body_left > 0) {
		c->in_body = true;
		c->carry_len = 0;
		return 0;
	}
	if (c->count_spans) {
		posts++;
		return reply(c, 200, "{}");
	}
	if (strncmp(head, "GET /stats ", 11) == 0) {
		snprintf(stats, sizeof(stats),
			 "{\"posts\":%llu,\"spans\":%llu,\"body_bytes\":%llu}",
			 (unsigned long long)posts, (unsigned long long)spans,
			 (unsigned long long)body_bytes);
		return reply(c, 200, stats);
	}
	return reply(c, 404, "{}");
}

/* Consume what c->in holds.  Returns 0, or < 0 to close. */
static int consume(struct sconn *c)
{
	size_t off = 0;
	int rc = 0;

	while (off < c->in_len && rc == 0) {
		if (c->in_body) {
			size_t k = c->in_len - off;

			if (k > c->body_left)
				k = (size_t)c->body_left;
			body_chunk(c, c->in + off, k);
			off += k;
			c->body_left -= k;
			if (c->body_left)
				continue;
			c->in_body = false;
			if (c->count_spans)
				posts++;
			rc = reply(c, c->count_spans ? 200 : 404, "{}");
		} else {
			char *e = memmem(c->in + off, c->in_len - off, "\r\n\r\n", 4);

			if (!e) {
				if (c->in_len - off > HEAD_MAX)
					return -E2BIG;
				break;
			}
			e[2] = '\0';
			rc = on_head(c, c->in + off);
			off = (size_t)(e + 4 - c->in);
		}
		if (rc == 0 && c->close_after && !c->in_body)
			return -ECONNRESET;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return rc;
}

/* Read until EAGAIN.  Returns 0, or < 0 to close (EOF too). */
static int conn_read(struct sconn *c)
{
	for (;;) {
		ssize_t k = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
		int rc;

		if (k == 0)
			return -ECONNRESET;
		if (k < 0)
			return errno == EAGAIN ? 0 : errno == EINTR ? 0 : -errno;
		c->in_len += (size_t)k;
		rc = consume(c);
		if (rc < 0)
			return rc;
	}
}

static void accept_all(int epfd, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct sconn *c;
		struct epoll_event ev = { .events = EPOLLIN };

		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		ev.data.ptr = c;
		if (!c || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
	}
}

static int listen_on(long port, int *bound)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
		close(fd);
		return -1;
	}
	*bound = ntohs(a.sin_port);
	return fd;
}

static int parse_port(int argc, char **argv, long *port)
{
	int opt;
	char *end;

	while ((opt = getopt(argc, argv, "p:")) != -1) {
		if (opt != 'p')
			goto usage;
		errno = 0;
		*port = strtol(optarg, &end, 10);
		if (errno || *end || end == optarg || *port < 0 || *port > 65535)
			goto usage;
	}
	if (optind == argc)
		return 0;
usage:
	fprintf(stderr, "usage: otlp_sink [-p PORT]\n");
	return -EINVAL;
}

int main(int argc, char **argv)
{
	static struct epoll_event evs[BATCH];
	struct sigaction sa = { .sa_handler = on_signal };
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
	long port = 0;
	int lfd, epfd, bound = 0;

	if (parse_port(argc, argv, &port) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);   /* no SA_RESTART: epoll_wait returns */
	sigaction(SIGINT, &sa, NULL);
	lfd = listen_on(port, &bound);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
		fprintf(stderr, "otlp_sink: cannot listen on 127.0.0.1:%ld: %s\n",
			port, strerror(errno));
		return 2;
	}
	printf("listening port=%d\n", bound);
	fflush(stdout);
	while (!stop) {
		int n = epoll_wait(epfd, evs, BATCH, -1);

		for (int i = 0; i < n; i++) {
			struct sconn *c = evs[i].data.ptr;

			if (!c) {
				accept_all(epfd, lfd);
			} else if (conn_read(c) < 0) {
				close(c->fd);    /* leaves the epoll set too */
				free(c);
			}
		}
	}
	printf("posts=%llu spans=%llu body_bytes=%llu\n", (unsigned long long)posts,
	       (unsigned long long)spans, (unsigned long long)body_bytes);
	return 0;
}
