/* test_tls.c - unit tests for the TLS keys of the config and the certificate set: loading, refusals, SNI names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tls.h"

#define ROUTE_A "routes = ( { name = \"a\"; prefix = \"/\"; upstream = \"http://127.0.0.1:9000\"; } );\n"

/* Certificates made once for the whole file with the openssl CLI. */
static char dir[] = "/tmp/ctxproxy-test-tls-XXXXXX";

static void sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

#define KEY(name) "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 " \
	"-out " name ".key 2>/dev/null"

static int make_certs(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	sh("cd %s && " KEY("ca") " && openssl req -x509 -new -key ca.key "
	   "-subj /CN=ca -days 2 -out ca.pem 2>/dev/null", dir);
	/* a leaf with two DNS SANs, a wildcard, and one named by its CN only */
	sh("cd %s && " KEY("a") " && openssl req -x509 -new -key a.key -subj /CN=ignored "
	   "-addext subjectAltName=DNS:a.test,DNS:WWW.A.Test -days 2 -out a.pem 2>/dev/null", dir);
	sh("cd %s && " KEY("w") " && openssl req -x509 -new -key w.key -subj /CN=w "
	   "-addext subjectAltName=DNS:*.w.test -days 2 -out w.pem 2>/dev/null", dir);
	sh("cd %s && " KEY("cn") " && openssl req -x509 -new -key cn.key -subj /CN=cn.test "
	   "-days 2 -out cn.pem 2>/dev/null", dir);
	/* a chain: leaf signed by the CA, then the CA */
	sh("cd %s && " KEY("l") " && openssl req -new -key l.key -subj /CN=chain.test "
	   "-out l.csr 2>/dev/null && openssl x509 -req -in l.csr -CA ca.pem -CAkey ca.key "
	   "-CAcreateserial -days 2 -out l1.pem 2>/dev/null && cat l1.pem ca.pem > l.pem", dir);
	/* expired: `openssl ca` can date a certificate in the past */
	sh("cd %s && mkdir -p db && : > db/index.txt && echo 1000 > db/serial && "
	   "printf '[ca]\\ndefault_ca=d\\n[d]\\ndir=db\\ndatabase=$dir/index.txt\\n"
	   "serial=$dir/serial\\nnew_certs_dir=$dir\\ndefault_md=sha256\\npolicy=p\\n"
	   "unique_subject=no\\n[p]\\ncommonName=supplied\\n' > db/ca.cnf && "
	   KEY("old") " && openssl req -new -key old.key -subj /CN=old.test -out old.csr "
	   "2>/dev/null && openssl ca -batch -config db/ca.cnf -cert ca.pem -keyfile ca.key "
	   "-startdate 20200101000000Z -enddate 20200102000000Z -in old.csr -out old.pem "
	   "-notext 2>/dev/null", dir);
	return 0;
}

static int remove_certs(void **state)
{
	(void)state;
	sh("rm -rf %s", dir);
	return 0;
}

struct result {
	struct config *cfg;
	char *errs;
};

static struct result load(const char *fmt, ...)
{
	struct result res = { NULL, NULL };
	char text[4096], path[512];
	size_t len = 0;
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/t.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fputs(ROUTE_A, f);
	fclose(f);
	f = open_memstream(&res.errs, &len);
	assert_non_null(f);
	res.cfg = config_load(path, f);
	fclose(f);
	return res;
}

static void result_free(struct result *res)
{
	config_free(res->cfg);
	free(res->errs);
}

static void expect_error(const char *text, const char *want)
{
	struct result res = load("%s", text);

	if (!strstr(res.errs, want))
		fail_msg("missing \"%s\" in:\n%s", want, res.errs);
	assert_null(res.cfg);
	result_free(&res);
}

/* A set from certificate entries "CERT KEY;..." (paths relative to dir);
 * *errs gets what tls_set_load wrote. */
static struct tls_set *set_of(const char *entries, char **errs)
{
	struct result res;
	struct tls_set *s;
	char text[2048] = "tls_listen = \"127.0.0.1:0\";\ntls_certificates = (";
	char c[64], k[64];
	const char *p = entries;
	size_t len = 0;
	int n = 0, used;
	FILE *f;

	while (sscanf(p, " %63s %63[^;];%n", c, k, &used) == 2) {
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
			 "%s{ cert = \"%s\"; key = \"%s\"; }", n++ ? ", " : "", c, k);
		p += used;
	}
	strncat(text, " );\n", sizeof(text) - strlen(text) - 1);
	res = load("%s", text);
	if (!res.cfg)
		fail_msg("config refused:\n%s", res.errs);
	f = open_memstream(errs, &len);
	assert_non_null(f);
	s = tls_set_load(res.cfg, f);
	fclose(f);
	result_free(&res);
	return s;
}

static void test_config_keys(void **state)
{
	struct result res;

	(void)state;
	res = load("tls_listen = ( \"127.0.0.1:8443\", \"[::1]:8443\" );\n"
		   "listen = \"127.0.0.1:8080\";\n"
		   "tls_certificates = ( { cert = \"a.pem\"; key = \"/abs/a.key\"; } );\n"
		   "tls_min_version = \"1.3\";\n");
	assert_non_null(res.cfg);
	/* plain first, then TLS, whatever the order in the file */
	assert_int_equal(res.cfg->nlisten, 3);
	assert_int_equal(res.cfg->nlisten_tls, 2);
	assert_int_equal(res.cfg->listen[0].port, 8080);
	assert_true(res.cfg->listen[2].ipv6);
	assert_int_equal(res.cfg->tls_min_version, 13);
	/* relative to the configuration's directory, like @include */
	assert_int_equal(strncmp(res.cfg->tls_certs[0].cert, dir, strlen(dir)), 0);
	assert_string_equal(res.cfg->tls_certs[0].cert + strlen(dir), "/a.pem");
	assert_string_equal(res.cfg->tls_certs[0].key, "/abs/a.key");
	result_free(&res);
	/* tls_listen alone is enough */
	res = load("tls_listen = \"127.0.0.1:8443\";\n"
		   "tls_certificates = ( { cert = \"a.pem\"; key = \"a.key\"; } );\n");
	assert_non_null(res.cfg);
	assert_int_equal(res.cfg->tls_min_version, 12);
	result_free(&res);
}

static void test_config_errors(void **state)
{
	(void)state;
	expect_error("workers = 1;\n", "t.conf:0: missing required key 'listen' (or 'tls_listen')");
	expect_error("listen = \":1\";\ntls_listen = \":2\";\n",
		     "t.conf:2: 'tls_listen' needs 'tls_certificates'");
	expect_error("listen = \":1\";\ntls_certificates = ( { cert = \"a\"; key = \"b\"; } );\n",
		     "t.conf:2: 'tls_certificates' is set but there is no 'tls_listen'");
	expect_error("listen = \":1\";\ntls_min_version = \"1.3\";\n",
		     "'tls_min_version' is set but there is no 'tls_listen'");
	expect_error("tls_listen = \":2\";\ntls_certificates = ( { cert = \"a\"; key = \"b\"; } );\n"
		     "tls_min_version = \"1.1\";\n",
		     "t.conf:3: 'tls_min_version' must be \"1.2\" or \"1.3\"");
	expect_error("tls_listen = \":2\";\ntls_certificates = ( { cert = \"a\"; } );\n",
		     "t.conf:2: each tls_certificates entry must be");
	expect_error("tls_listen = \":2\";\ntls_certificates = ( );\n",
		     "'tls_certificates' must name at least one certificate");
	expect_error("tls_listen = \"nope\";\ntls_certificates = ( { cert = \"a\"; key = \"b\"; } );\n",
		     "t.conf:1: invalid tls_listen address 'nope'");
	expect_error("listen = \"127.0.0.1:8\";\ntls_listen = \"127.0.0.1:8\";\n"
		     "tls_certificates = ( { cert = \"a\"; key = \"b\"; } );\n",
		     "t.conf:2: duplicate listen address");
}

static void test_names(void **state)
{
	(void)state;
	assert_true(tls_name_matches("a.test", "a.test"));
	assert_true(tls_name_matches("a.test", "A.TEST"));
	assert_true(tls_name_matches("a.test", "a.test."));
	assert_false(tls_name_matches("a.test", "b.a.test"));
	assert_false(tls_name_matches("a.test", "a.tes"));
	assert_true(tls_name_matches("*.w.test", "x.w.test"));
	assert_true(tls_name_matches("*.w.test", "X-Y.W.Test"));
	assert_false(tls_name_matches("*.w.test", "w.test"));
	assert_false(tls_name_matches("*.w.test", ".w.test"));
	assert_false(tls_name_matches("*.w.test", "a.b.w.test"));
	assert_false(tls_name_matches("*.w.test", "xw.test"));
	assert_false(tls_name_matches("*", "a"));
	assert_false(tls_name_matches("a.test", ""));
}

static void test_pick(void **state)
{
	char *errs = NULL;
	struct tls_set *s;
	gnutls_pcert_st *pc;
	gnutls_privkey_t key;
	unsigned int n;

	(void)state;
	s = set_of("a.pem a.key; w.pem w.key; cn.pem cn.key; l.pem l.key;", &errs);
	if (!s)
		fail_msg("set refused:\n%s", errs);
	assert_string_equal(errs, "");
	assert_int_equal(tls_set_pick_index(s, "a.test"), 0);
	assert_int_equal(tls_set_pick_index(s, "www.a.test"), 0);
	assert_int_equal(tls_set_pick_index(s, "ignored"), 0);   /* CN under SANs */
	assert_int_equal(tls_set_pick_index(s, "x.w.test"), 1);
	assert_int_equal(tls_set_pick_index(s, "cn.test"), 2);    /* CN alone */
	assert_int_equal(tls_set_pick_index(s, "chain.test"), 3);
	assert_int_equal(tls_set_pick_index(s, "nothing.test"), 0);
	assert_int_equal(tls_set_pick_index(s, NULL), 0);
	tls_set_pick(s, "chain.test", &pc, &n, &key);
	assert_int_equal(n, 2);                                   /* leaf + CA */
	assert_non_null(key);
	/* a reference outlives the loader's */
	assert_ptr_equal(tls_set_ref(s), s);
	tls_set_unref(s);
	tls_set_unref(s);
	tls_set_unref(NULL);
	free(errs);
}

static void test_exact_beats_wildcard(void **state)
{
	char *errs = NULL;
	struct tls_set *s;

	(void)state;
	sh("cd %s && " KEY("e") " && openssl req -x509 -new -key e.key -subj /CN=e "
	   "-addext subjectAltName=DNS:e.w.test -days 2 -out e.pem 2>/dev/null", dir);
	s = set_of("w.pem w.key; e.pem e.key;", &errs);
	assert_non_null(s);
	assert_int_equal(tls_set_pick_index(s, "e.w.test"), 1);
	assert_int_equal(tls_set_pick_index(s, "f.w.test"), 0);
	tls_set_unref(s);
	free(errs);
}

static void expect_refused(const char *entries, const char *want1, const char *want2)
{
	char *errs = NULL;
	struct tls_set *s = set_of(entries, &errs);

	if (s || !strstr(errs, want1) || !strstr(errs, want2))
		fail_msg("wanted \"%s\" and \"%s\" from %s, got %s:\n%s", want1, want2,
			 entries, s ? "a set" : "NULL", errs);
	free(errs);
}

static void test_refusals(void **state)
{
	(void)state;
	expect_refused("a.pem w.key;", "the key", "w.key does not match the certificate");
	expect_refused("a.pem w.key;", "a.pem", "t.conf:2: ");
	expect_refused("old.pem old.key;", "old.pem: the certificate expired on 2020-01-02", "");
	expect_refused("none.pem a.key;", "none.pem: cannot read: No such file", "");
	expect_refused("a.pem none.key;", "none.key: cannot read: No such file", "");
	expect_refused("a.key a.key;", "a.key: not a PEM certificate", "");
	expect_refused("a.pem a.pem;", "a.pem: not an unencrypted PEM private key", "");
	expect_refused("db a.key;", "db: cannot read: not a regular file", "");
	/* every broken entry is named, not only the first */
	expect_refused("old.pem old.key; a.pem w.key;", "old.pem", "w.key");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_keys),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_exact_beats_wildcard),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
