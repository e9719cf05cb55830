/* test_curlmux.c - unit tests for libcurl's multi in a loop: a connect ends, a socket taken over stays open, a refused one reports. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "context.h"
#include "curlmux.h"
#include "loop.h"

static CURL *ended;
static CURLcode ended_rc;
static int nended;

static void on_done(CURL *easy, CURLcode rc)
{
	ended = easy;
	ended_rc = rc;
	nended++;
}

/* A listener on 127.0.0.1 and its port. */
static int listen_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static CURL *connect_to(struct curlmux *m, int port)
{
	char url[64];
	CURL *e = curl_easy_init();

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	assert_int_equal(curlmux_add(m, e), 0);
	return e;
}

/* Run the loop and the mux's timer until a transfer ends (5 s at most). */
static void run_until_done(struct loop *loop, struct curlmux *m)
{
	int64_t end = ctx_now_ns() + 5000000000LL;

	nended = 0;
	while (!nended && ctx_now_ns() < end) {
		curlmux_on_timer(m, ctx_now_ns());
		if (!nended)
			loop_run_once(loop, 10);
	}
	assert_int_equal(nended, 1);
}

static void test_take_over_keeps_the_socket(void **state)
{
	struct loop *loop = loop_new();
	struct curlmux *m = curlmux_new(loop, on_done);
	int port, lfd = listen_any(&port), peer;
	curl_socket_t s = CURL_SOCKET_BAD;
	CURL *e;
	char c = 0;

	(void)state;
	e = connect_to(m, port);
	run_until_done(loop, m);
	assert_ptr_equal(ended, e);
	assert_int_equal(ended_rc, CURLE_OK);
	assert_int_equal(curl_easy_getinfo(e, CURLINFO_ACTIVESOCKET, &s),
			 CURLE_OK);
	curlmux_take_over(m, e, s);
	/* libcurl let go of it, the socket is still open and ours */
	assert_int_equal(send(s, "x", 1, MSG_NOSIGNAL), 1);
	peer = accept(lfd, NULL, NULL);
	assert_true(peer >= 0);
	assert_int_equal(recv(peer, &c, 1, 0), 1);
	assert_int_equal(c, 'x');
	close(s);
	close(peer);
	close(lfd);
	curlmux_free(m);
	loop_free(loop);
}

static void test_refused_reports(void **state)
{
	struct loop *loop = loop_new();
	struct curlmux *m = curlmux_new(loop, on_done);
	int port, lfd = listen_any(&port);
	CURL *e;

	(void)state;
	close(lfd);                      /* nothing listens there now */
	e = connect_to(m, port);
	run_until_done(loop, m);
	assert_ptr_equal(ended, e);
	assert_int_equal(ended_rc, CURLE_COULDNT_CONNECT);
	curlmux_remove(m, e);
	curl_easy_cleanup(e);
	curlmux_free(m);
	loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take_over_keeps_the_socket),
		cmocka_unit_test(test_refused_reports),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
