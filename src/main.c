/* main.c - command line, start-up, signals and graceful stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "admin.h"
#include "config.h"
#include "context.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "worker.h"

#define CTXPROXY_VERSION "0.1.0"
#define DEFAULT_CONFIG "/etc/ctxproxy/ctxproxy.conf"
#define MAX_WORKERS 256
#define LISTEN_BACKLOG 4096

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ctxproxy [-c FILE] [-t] [-V] [-h]\n"
		"  -c, --config FILE   configuration (default %s)\n"
		"  -t, --check-config  validate FILE and exit\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          this help\n", DEFAULT_CONFIG);
}

struct options {
	const char *config;
	int check;
};

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->config = DEFAULT_CONFIG;
	for (;;) {
		c = getopt_long(argc, argv, "c:tVh", longs, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 'c': o->config = optarg; break;
		case 't': o->check = 1; break;
		case 'V': printf("ctxproxy %s\n", CTXPROXY_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 1;
	}
	return -1;
}

static socklen_t addr_fill(const struct config_addr *a, int port,
			   struct sockaddr_storage *ss)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (a->ipv6) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, a->host, &in6->sin6_addr);
		return sizeof(*in6);
	}
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	if (a->host[0])
		inet_pton(AF_INET, a->host, &in->sin_addr);
	else
		in->sin_addr.s_addr = htonl(INADDR_ANY);
	return sizeof(*in);
}

/* One listening socket on a (with *port; 0 = learn it from the kernel),
 * shared between workers through SO_REUSEPORT.  Returns fd or -errno. */
static int listen_on(const struct config_addr *a, int *port, int reuseport)
{
	struct sockaddr_storage ss;
	socklen_t len = addr_fill(a, *port, &ss);
	int fd, one = 1, err;

	fd = socket(a->ipv6 ? AF_INET6 : AF_INET,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (a->ipv6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		goto fail;
	*port = ntohs(a->ipv6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
		      ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* fds[w * nlisten + i]: worker w's socket for listen address i. */
static int open_listeners(const struct config *cfg, int *fds)
{
	int port, fd;
	size_t i;
	int w;

	for (i = 0; i < cfg->nlisten; i++) {
		port = cfg->listen[i].port;
		for (w = 0; w < cfg->workers; w++) {
			fd = listen_on(&cfg->listen[i], &port, 1);
			if (fd < 0) {
				log_msg(LOG_ERROR, "cannot listen", "addr=%s%s%s:%d error=\"%s\"",
					cfg->listen[i].ipv6 ? "[" : "", cfg->listen[i].host,
					cfg->listen[i].ipv6 ? "]" : "", port, strerror(-fd));
				return fd;
			}
			fds[(size_t)w * cfg->nlisten + i] = fd;
		}
		log_msg(LOG_INFO, "listening", "addr=%s%s%s:%d",
			cfg->listen[i].ipv6 ? "[" : "",
			cfg->listen[i].host[0] ? cfg->listen[i].host : "0.0.0.0",
			cfg->listen[i].ipv6 ? "]" : "", port);
	}
	return 0;
}

/* The admin listener, when configured: its own socket (no SO_REUSEPORT, so
 * a second daemon cannot share it silently) and thread. */
static int start_admin(const struct config *cfg, struct admin **out)
{
	struct config_addr a;
	int port, fd;

	*out = NULL;
	if (!cfg->admin)
		return 0;
	if (config_parse_addr(cfg->admin, &a))
		return -EINVAL;
	port = a.port;
	fd = listen_on(&a, &port, 0);
	if (fd < 0) {
		log_msg(LOG_ERROR, "cannot listen", "addr=%s error=\"%s\"",
			cfg->admin, strerror(-fd));
		return fd;
	}
	*out = admin_start(fd);
	if (!*out) {
		close(fd);
		return -EIO;
	}
	log_msg(LOG_INFO, "admin listening", "addr=%s%s%s:%d",
		a.ipv6 ? "[" : "", a.host[0] ? a.host : "0.0.0.0",
		a.ipv6 ? "]" : "", port);
	return 0;
}

static long total_inflight(struct worker **ws, int n)
{
	long sum = 0;
	int i;

	for (i = 0; i < n; i++)
		sum += worker_inflight(ws[i]);
	return sum;
}

/* Wait (bounded by ms) until no request is in flight. */
static void wait_idle(struct worker **ws, int n, int64_t ms)
{
	int64_t until = ctx_now_ns() + ms * 1000000;
	struct timespec tick = { 0, 5 * 1000000 };

	while (total_inflight(ws, n) > 0 && ctx_now_ns() < until)
		nanosleep(&tick, NULL);
}

static void stop_workers(struct worker **ws, int n, int64_t grace_ms)
{
	int i;

	for (i = 0; i < n; i++)
		worker_drain(ws[i]);
	wait_idle(ws, n, grace_ms);
	for (i = 0; i < n; i++)
		worker_cancel_all(ws[i]);
	wait_idle(ws, n, 2000);
	for (i = 0; i < n; i++)
		worker_stop(ws[i]);
}

/* Block the signals we handle in every thread; main waits for them. */
static void wait_for_stop(sigset_t *set)
{
	int sig;

	for (;;) {
		if (sigwait(set, &sig) != 0)
			continue;
		if (sig == SIGTERM || sig == SIGINT) {
			log_msg(LOG_INFO, "stopping", "signal=%s",
				sig == SIGTERM ? "TERM" : "INT");
			return;
		}
		if (sig == SIGHUP)
			log_msg(LOG_WARN, "reload is not supported yet", NULL);
		if (sig == SIGUSR1 && log_reopen() < 0)
			log_msg(LOG_ERROR, "cannot reopen the access log", NULL);
		else if (sig == SIGUSR1)
			log_msg(LOG_INFO, "access log reopened", NULL);
	}
}

static int run(const struct config *cfg)
{
	struct route_table *routes = route_table_new(cfg);
	struct worker *ws[MAX_WORKERS] = { 0 };
	struct admin *admin = NULL;
	int *fds, n = 0, rc = 2;
	sigset_t set;

	fds = calloc((size_t)cfg->workers * cfg->nlisten, sizeof(int));
	if (!routes || !fds || open_listeners(cfg, fds) < 0 ||
	    start_admin(cfg, &admin) < 0)
		goto free_fds;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (n = 0; n < cfg->workers; n++) {
		ws[n] = worker_start(n, cfg, routes,
				     fds + (size_t)n * cfg->nlisten);
		if (!ws[n])
			goto stop;
	}
	log_msg(LOG_INFO, "started", "workers=%d", cfg->workers);
	wait_for_stop(&set);
	rc = 0;
stop:
	admin_set_draining(admin);
	stop_workers(ws, n, rc == 0 ? cfg->shutdown_grace_ms : 0);
	if (rc == 0)
		log_msg(LOG_INFO, "stopped", NULL);
free_fds:
	admin_stop(admin);
	free(fds);
	route_table_free(routes);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct config *cfg;
	int rc;

	rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	cfg = config_load(o.config, stderr);
	if (!cfg)
		return 1;
	if (metrics_assign_slots(cfg) < 0)
		log_msg(LOG_WARN, "too many route names: some share metrics", NULL);
	if (o.check) {
		printf("%s: ok\n", o.config);
		config_free(cfg);
		return 0;
	}
	if (log_open_access(cfg->access_log, cfg->access_log_format) < 0) {
		log_msg(LOG_ERROR, "cannot open the access log", "path=%s",
			cfg->access_log);
		config_free(cfg);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = run(cfg);
	curl_global_cleanup();
	log_close();
	config_free(cfg);
	return rc;
}
