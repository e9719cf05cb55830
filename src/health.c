/* health.c - active health checks on a thread of their own (libcurl multi), and the up/down state every worker reads. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "config.h"
#include "context.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

/* With nothing due the thread sleeps until woken; this only bounds it. */
#define IDLE_WAIT_MS (3600 * 1000)
#define NS_PER_MS 1000000LL

/* What every worker reads, by server slot. */
struct slot_state {
	atomic_int down;        /* `fall` checks failed in a row */
	atomic_int ejected_by;  /* workers that have it ejected now */
};
static struct slot_state states[METRICS_MAX_SERVERS];

/* One server of a set.  The settings are copied by health_set_config;
 * the rest is the checking thread's. */
struct server {
	int slot;
	bool checked;             /* its route has a `health` block */
	char *url;                /* origin + path (checked only) */
	char *host;               /* the Host field (checked only) */
	bool tls, verify;         /* https://: the route's TLS settings */
	char *ca, *cert, *key;    /* NULL when unset */
	char *connect_to;         /* with tls_server_name: the URL names it,
				   the connection goes to the origin
				   ("name:port:host:port") */
	struct curl_slist *sent_to;  /* connect_to of the check in flight */
	int64_t interval_ms, timeout_ms;
	int rise, fall;
	int passes, fails;        /* in a row */
	int64_t next_ns;          /* the next check is due; 0 = now */
	CURL *easy;               /* made on the first check, then reused */
	struct curl_slist *sent;  /* the headers of the check in flight */
	bool busy;                /* easy is in the multi */
	int result;               /* a check ended: 1 passed, -1 failed, 0 none */
	bool kept;                /* merge: a newer set took its state */
};

struct set {
	struct server *v;
	size_t n;
};

/* lock guards pending and current (the list) and the rise/fall state.
 * Results are applied under it, after any newer set was taken, so a
 * server that health_set_config just made unchecked is never marked down
 * by a check of the old set. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct set *pending;   /* from health_set_config, not yet taken */
static struct set *current;   /* the one being checked */
static CURLM *multi;          /* non-NULL while started (main thread) */
static pthread_t thread;
static atomic_bool stopping;
/* The checking thread's index of current (and health_stop's, after the
 * join). */
static struct server *by_slot[METRICS_MAX_SERVERS];

bool health_up(int slot)
{
	if (slot <= 0 || slot >= METRICS_MAX_SERVERS)
		return true;
	return !atomic_load_explicit(&states[slot].down, memory_order_relaxed);
}

void health_ejected_add(int slot, int delta)
{
	if (slot <= 0 || slot >= METRICS_MAX_SERVERS)
		return;
	atomic_fetch_add_explicit(&states[slot].ejected_by, delta,
				  memory_order_relaxed);
}

static void set_down(int slot, int down)
{
	atomic_store_explicit(&states[slot].down, down, memory_order_relaxed);
}

static const char *label(const char *s)
{
	return s ? s : "-";
}

/* Give back s's handle: out of the multi if it is in it, then freed. */
static void server_drop_easy(struct server *s)
{
	if (s->busy)
		curl_multi_remove_handle(multi, s->easy);
	s->busy = false;
	curl_easy_cleanup(s->easy);
	s->easy = NULL;
	curl_slist_free_all(s->sent);
	s->sent = NULL;
	curl_slist_free_all(s->sent_to);
	s->sent_to = NULL;
}

/* set_free(NULL) is a no-op.  Easy handles still in s go too (the caller
 * owns multi: the checking thread, or health_stop after the join). */
static void set_free(struct set *s)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; i < s->n; i++) {
		if (s->v[i].easy)
			server_drop_easy(&s->v[i]);
		free(s->v[i].url);
		free(s->v[i].host);
		free(s->v[i].ca);
		free(s->v[i].cert);
		free(s->v[i].key);
		free(s->v[i].connect_to);
	}
	free(s->v);
	free(s);
}

static int64_t at_least_1(int64_t v)
{
	return v < 1 ? 1 : v;
}

static int dup_or_null(char **to, const char *from)
{
	*to = from ? strdup(from) : NULL;
	return from && !*to ? -ENOMEM : 0;
}

/* s checks an https server as the workers connect to it: the route's
 * verification, CA, client certificate and server name.  The URL is
 * "https://NAME:PORT/path" with a server name, the connection going to
 * the origin's host and port.  Returns 0 or -ENOMEM. */
static int server_init_tls(struct server *s, const struct config_route *r,
			   const struct config_server *sv, const char *path)
{
	const struct config_upstream_tls *t = &r->tls;
	const char *hostport = sv->origin + strlen("https://");
	const char *port = strrchr(hostport, ':');
	char line[512];
	size_t n;

	s->tls = true;
	s->verify = t->verify;
	if (dup_or_null(&s->ca, t->ca) < 0 ||
	    dup_or_null(&s->cert, t->client_cert) < 0 ||
	    dup_or_null(&s->key, t->client_key) < 0)
		return -ENOMEM;
	if (!t->server_name || !port)
		return 0;
	snprintf(line, sizeof(line), "%s%s:%s", t->server_name, port, hostport);
	s->connect_to = strdup(line);
	free(s->url);
	n = strlen("https://") + strlen(t->server_name) + strlen(port) +
		strlen(path) + 1;
	s->url = malloc(n);
	if (!s->connect_to || !s->url)
		return -ENOMEM;
	snprintf(s->url, n, "https://%s%s%s", t->server_name, port, path);
	return 0;
}

/* Fill s from server sv of route r.  Returns 0 or -ENOMEM. */
static int server_init(struct server *s, const struct config_route *r,
		       const struct config_server *sv)
{
	const char *path = r->health.path ? r->health.path : "/";
	size_t n;

	s->slot = sv->slot;
	s->checked = r->health.on;
	if (!s->checked)
		return 0;
	n = strlen(sv->origin) + strlen(path) + 1;
	s->url = malloc(n);
	s->host = strdup(sv->host ? sv->host : "");
	if (!s->url || !s->host)
		return -ENOMEM;
	snprintf(s->url, n, "%s%s", sv->origin, path);
	if (sv->tls && server_init_tls(s, r, sv, path) < 0)
		return -ENOMEM;
	s->interval_ms = at_least_1(r->health.interval_ms);
	s->timeout_ms = at_least_1(r->health.timeout_ms);
	s->rise = (int)at_least_1(r->health.rise);
	s->fall = (int)at_least_1(r->health.fall);
	return 0;
}

/* The servers of cfg with a slot, each slot once (a route listing the
 * same origin twice has one server).  NULL on ENOMEM. */
static struct set *set_new(const struct config *cfg)
{
	static const int bits = (int)(CHAR_BIT * sizeof(unsigned));
	unsigned seen[METRICS_MAX_SERVERS / (CHAR_BIT * sizeof(unsigned)) + 1];
	struct set *s = calloc(1, sizeof(*s));
	const struct config_route *r;
	size_t i, j, total = 0;
	int slot;

	if (!s)
		return NULL;
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < cfg->nroutes; i++)
		total += cfg->routes[i].nservers;
	s->v = calloc(total ? total : 1, sizeof(*s->v));
	if (!s->v)
		goto free_set;
	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		for (j = 0; j < r->nservers; j++) {
			slot = r->servers[j].slot;
			if (slot <= 0 || slot >= METRICS_MAX_SERVERS ||
			    !metrics_server_name(slot) ||
			    (seen[slot / bits] & (1u << (slot % bits))))
				continue;
			seen[slot / bits] |= 1u << (slot % bits);
			if (server_init(&s->v[s->n++], r, &r->servers[j]) < 0)
				goto free_set;
		}
	}
	return s;
free_set:
	set_free(s);
	return NULL;
}

int health_set_config(const struct config *cfg)
{
	struct set *s = set_new(cfg);
	size_t i;

	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&lock);
	for (i = 0; i < s->n; i++)
		if (!s->v[i].checked)
			set_down(s->v[i].slot, 0);
	set_free(pending);
	pending = s;
	pthread_mutex_unlock(&lock);
	if (multi)
		curl_multi_wakeup(multi);
	return 0;
}

/* ---- the checking thread ---- */

/* New s takes over the state of o, the same slot in the set before. */
static void server_take(struct server *s, struct server *o, int64_t now)
{
	o->kept = true;
	if (s->checked && o->checked) {
		s->passes = o->passes;
		s->fails = o->fails;
		s->result = o->result;
		s->next_ns = o->next_ns;
		if (s->next_ns > now + s->interval_ms * NS_PER_MS)
			s->next_ns = now + s->interval_ms * NS_PER_MS;
	}
	s->easy = o->easy;
	s->sent = o->sent;
	s->sent_to = o->sent_to;
	s->busy = o->busy;
	o->easy = NULL;
	o->sent = NULL;
	o->sent_to = NULL;
	o->busy = false;
	/* No longer checked: a check in flight must not count. */
	if (!s->checked && s->easy)
		server_drop_easy(s);
}

/* Under lock: make the pending set current, keeping the state of the
 * servers that stay.  A server that went away starts up if it comes
 * back. */
static void take_pending(void)
{
	struct set *old = current;
	int64_t now = ctx_now_ns();
	struct server *o;
	size_t i;

	if (!pending)
		return;
	for (i = 0; i < pending->n; i++) {
		o = by_slot[pending->v[i].slot];
		if (o)
			server_take(&pending->v[i], o, now);
	}
	for (i = 0; old && i < old->n; i++) {
		by_slot[old->v[i].slot] = NULL;
		if (!old->v[i].kept)
			set_down(old->v[i].slot, 0);
	}
	set_free(old);
	current = pending;
	pending = NULL;
	for (i = 0; i < current->n; i++)
		by_slot[current->v[i].slot] = &current->v[i];
}

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
	(void)data;
	(void)arg;
	return size * n;
}

/* The options that never change, set once per handle. */
static CURL *easy_new(void)
{
	CURL *e = curl_easy_init();

	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* Checks go straight to the server, never through an environment
	 * proxy, and on a fresh connection each: a check proves the server
	 * accepts connections now. */
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	return e;
}

/* An https server's TLS settings on its handle (each check: a reload
 * may have changed them).  -ENOMEM. */
static int check_tls_options(struct server *s)
{
	struct curl_slist *to = NULL;

	if (s->connect_to) {
		to = curl_slist_append(NULL, s->connect_to);
		if (!to)
			return -ENOMEM;
	}
	curl_slist_free_all(s->sent_to);     /* not busy: libcurl is done with it */
	s->sent_to = to;
	curl_easy_setopt(s->easy, CURLOPT_SSL_VERIFYPEER, s->verify ? 1L : 0L);
	curl_easy_setopt(s->easy, CURLOPT_SSL_VERIFYHOST, s->verify ? 2L : 0L);
	curl_easy_setopt(s->easy, CURLOPT_CAINFO, s->ca);
	curl_easy_setopt(s->easy, CURLOPT_SSLCERT, s->cert);
	curl_easy_setopt(s->easy, CURLOPT_SSLKEY, s->key);
	curl_easy_setopt(s->easy, CURLOPT_CONNECT_TO, s->sent_to);
	return 0;
}

/* Send s's check.  Returns 0 or a negative errno (it is not sent). */
static int check_start(struct server *s)
{
	struct curl_slist *h = NULL, *t;
	char field[512];

	if (!s->easy)
		s->easy = easy_new();
	if (!s->easy)
		return -ENOMEM;
	snprintf(field, sizeof(field), "Host: %s", s->host);
	t = curl_slist_append(h, field);
	if (t)
		h = curl_slist_append(t, "Connection: close");
	if (!t || !h) {
		curl_slist_free_all(t);
		return -ENOMEM;
	}
	curl_slist_free_all(s->sent);
	s->sent = h;
	curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->sent);
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
	curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)s->timeout_ms);
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (void *)(intptr_t)s->slot);
	if (s->tls && check_tls_options(s) < 0)
		return -ENOMEM;
	if (curl_multi_add_handle(multi, s->easy) != CURLM_OK)
		return -EIO;
	s->busy = true;
	return 0;
}

/* One check of s ended: `fall` failures in a row mark it down, `rise`
 * passes up. */
static void check_done(struct server *s, bool passed)
{
	const char *route = label(metrics_server_route(s->slot));
	const char *name = label(metrics_server_name(s->slot));
	bool down = !health_up(s->slot);

	if (passed) {
		s->fails = 0;
		if (s->passes < INT_MAX)
			s->passes++;
		if (down && s->passes >= s->rise) {
			set_down(s->slot, 0);
			log_msg(LOG_INFO, "upstream server up",
				"route=%s server=%s checks_passed=%d", route,
				name, s->passes);
		}
		return;
	}
	s->passes = 0;
	if (s->fails < INT_MAX)
		s->fails++;
	if (!down && s->fails >= s->fall) {
		set_down(s->slot, 1);
		log_msg(LOG_WARN, "upstream server down",
			"route=%s server=%s checks_failed=%d", route, name,
			s->fails);
	}
}

/* Under lock: take the checks that ended out of the multi, keeping each
 * result with its server until apply().  2xx and 3xx within the timeout
 * pass; a failed resolve, connect, timeout or any other status fails. */
static void collect(void)
{
	struct server *s;
	CURLMsg *msg;
	CURLcode rc;
	long code;
	char *priv;
	CURL *e;
	int left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg dies with the removal: copy first. */
		e = msg->easy_handle;
		rc = msg->data.result;
		code = 0;
		priv = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		curl_multi_remove_handle(multi, e);
		s = by_slot[(intptr_t)priv];
		/* Every handle in the multi is a server's of current (merges
		 * take the others out): never free one we do not own. */
		if (!s || s->easy != e)
			continue;
		s->busy = false;
		s->result = rc == CURLE_OK && code >= 200 && code < 400 ? 1 : -1;
	}
}

/* Under lock, after take_pending(): count the results. */
static void apply(void)
{
	struct server *s;
	size_t i;

	for (i = 0; current && i < current->n; i++) {
		s = &current->v[i];
		if (s->result && s->checked)
			check_done(s, s->result > 0);
		s->result = 0;
	}
}

/* Under lock: send the checks that are due.  Returns the milliseconds
 * until the next one is. */
static int start_due(void)
{
	int64_t now = ctx_now_ns(), wait = IDLE_WAIT_MS, ms;
	struct server *s;
	size_t i;

	for (i = 0; current && i < current->n; i++) {
		s = &current->v[i];
		if (!s->checked || s->busy)
			continue;
		if (s->next_ns <= now) {
			/* A check we could not send is no news about the
			 * server: it is tried again next interval. */
			if (check_start(s) < 0)
				log_msg(LOG_ERROR, "cannot send a health check",
					"server=%s",
					label(metrics_server_name(s->slot)));
			s->next_ns = now + s->interval_ms * NS_PER_MS;
			if (s->busy)
				continue;
		}
		ms = (s->next_ns - now + NS_PER_MS - 1) / NS_PER_MS;
		if (ms < wait)
			wait = ms;
	}
	return (int)wait;
}

/* The checks in flight time out by themselves (CURLOPT_TIMEOUT_MS, which
 * curl_multi_poll honours); the wait covers the next check due;
 * health_set_config and health_stop wake the poll. */
static void *check_loop(void *arg)
{
	int wait_ms = 0, running;

	(void)arg;
	while (!atomic_load(&stopping)) {
		curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
		if (atomic_load(&stopping))
			break;
		curl_multi_perform(multi, &running);
		pthread_mutex_lock(&lock);
		collect();
		take_pending();
		apply();
		wait_ms = start_due();
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

int health_start(void)
{
	sigset_t all, old;
	int rc;

	if (multi)
		return -EALREADY;
	multi = curl_multi_init();
	if (!multi)
		return -ENOMEM;
	atomic_store(&stopping, false);
	/* Signals are the main thread's: the checking thread (and curl's
	 * resolver threads, which inherit its mask) never take one. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, NULL, check_loop, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		curl_multi_cleanup(multi);
		multi = NULL;
		return -rc;
	}
	return 0;
}

void health_stop(void)
{
	if (multi) {
		atomic_store(&stopping, true);
		curl_multi_wakeup(multi);
		pthread_join(thread, NULL);
	}
	pthread_mutex_lock(&lock);
	set_free(current);
	set_free(pending);
	current = pending = NULL;
	memset(by_slot, 0, sizeof(by_slot));
	pthread_mutex_unlock(&lock);
	if (multi)
		curl_multi_cleanup(multi);
	multi = NULL;
}

int health_write_metrics(FILE *out)
{
	const struct set *s;
	int slot, up;
	size_t i;

	fprintf(out, "# HELP ctxproxy_upstream_server_up 1 when the server "
		"gets requests: not down by the active checks and not "
		"ejected by any worker.\n"
		"# TYPE ctxproxy_upstream_server_up gauge\n");
	pthread_mutex_lock(&lock);
	s = pending ? pending : current;
	for (i = 0; s && i < s->n; i++) {
		slot = s->v[i].slot;
		up = health_up(slot) &&
		     atomic_load_explicit(&states[slot].ejected_by,
					  memory_order_relaxed) <= 0;
		fprintf(out, "ctxproxy_upstream_server_up{route=\"%s\","
			"server=\"%s\"} %d\n", label(metrics_server_route(slot)),
			label(metrics_server_name(slot)), up);
	}
	pthread_mutex_unlock(&lock);
	return ferror(out) ? -EIO : 0;
}
