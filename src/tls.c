/* tls.c - the TLS listeners' certificate set: loaded and checked with GnuTLS, chosen by SNI, shared by reference. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/x509.h>

#include "config.h"
#include "tls.h"

#define TLS_CHAIN_MAX 16          /* certificates in one file */
#define TLS_NAMES_MAX 64          /* names kept per certificate */
#define TLS_FILE_MAX (1 << 20)    /* a PEM file larger than this is refused */

struct tls_cert {
	gnutls_pcert_st pcert[TLS_CHAIN_MAX];
	unsigned int npcert;
	gnutls_privkey_t key;
	char *names[TLS_NAMES_MAX];   /* lower case */
	size_t nnames;
};

struct tls_set {
	atomic_int refs;
	size_t n;
	struct tls_cert c[];
};

/* One entry being loaded: where to blame, and the first problem found. */
struct tls_load {
	const struct config_tls_cert *e;
	FILE *err;
	int nerr;
};

__attribute__((format(printf, 3, 4)))
static void complain(struct tls_load *ld, const char *path, const char *fmt, ...)
{
	va_list ap;

	ld->nerr++;
	if (!ld->err)
		return;
	fprintf(ld->err, "%s: %s: ", ld->e->where, path);
	va_start(ap, fmt);
	vfprintf(ld->err, fmt, ap);
	va_end(ap);
	fputc('\n', ld->err);
}

/* The whole file, NUL-terminated, in d (the caller frees d->data); -1
 * after complaining. */
static int read_pem(struct tls_load *ld, const char *path, gnutls_datum_t *d)
{
	struct stat st;
	ssize_t got;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		complain(ld, path, "cannot read: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > TLS_FILE_MAX) {
		complain(ld, path, "cannot read: not a regular file of at most 1 MiB");
		goto close_fd;
	}
	d->data = malloc((size_t)st.st_size + 1);
	if (!d->data) {
		complain(ld, path, "out of memory");
		goto close_fd;
	}
	while (len < (size_t)st.st_size) {
		got = read(fd, d->data + len, (size_t)st.st_size - len);
		if (got <= 0) {
			complain(ld, path, "cannot read: %s",
				 got < 0 ? strerror(errno) : "short read");
			free(d->data);
			goto close_fd;
		}
		len += (size_t)got;
	}
	d->data[len] = '\0';
	d->size = (unsigned int)len;
	close(fd);
	return 0;
close_fd:
	close(fd);
	return -1;
}

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

static void add_name(struct tls_cert *c, const char *name, size_t len)
{
	char *copy;

	if (c->nnames >= TLS_NAMES_MAX || len == 0)
		return;
	copy = strndup(name, len);
	if (!copy)
		return;
	lower(copy);
	c->names[c->nnames++] = copy;
}

/* SNI names the certificate answers for: its DNS SANs, else its CN. */
static void collect_names(struct tls_cert *c, gnutls_x509_crt_t crt)
{
	char buf[256];
	size_t size;
	unsigned int seq, critical;
	int type;

	for (seq = 0;; seq++) {
		size = sizeof(buf);
		type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf, &size,
							    &critical);
		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (type == GNUTLS_SAN_DNSNAME)
			add_name(c, buf, size);
	}
	if (c->nnames)
		return;
	size = sizeof(buf);
	if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
					  0, buf, &size) == 0)
		add_name(c, buf, size);
}

/* Every certificate of the chain must be valid now. */
static int check_dates(struct tls_load *ld, const char *path,
		       gnutls_x509_crt_t *crts, unsigned int n)
{
	time_t now = time(NULL), end;
	char when[32];
	struct tm tm;
	unsigned int i;

	for (i = 0; i < n; i++) {
		end = gnutls_x509_crt_get_expiration_time(crts[i]);
		if (end == (time_t)-1 || end >= now)
			continue;
		gmtime_r(&end, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (i == 0)
			complain(ld, path, "the certificate expired on %s", when);
		else
			complain(ld, path, "certificate %u of the chain expired on %s",
				 i + 1, when);
		return -1;
	}
	return 0;
}

static int same_key(gnutls_x509_crt_t crt, gnutls_privkey_t key)
{
	unsigned char a[64], b[64];
	size_t na = sizeof(a), nb = sizeof(b);
	gnutls_pubkey_t pub;
	int rc = -1;

	if (gnutls_pubkey_init(&pub) < 0)
		return -1;
	if (gnutls_pubkey_import_privkey(pub, key, 0, 0) == 0 &&
	    gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, b, &nb) == 0 &&
	    gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, a, &na) == 0 &&
	    na == nb && memcmp(a, b, na) == 0)
		rc = 0;
	gnutls_pubkey_deinit(pub);
	return rc;
}

static int load_chain(struct tls_load *ld, struct tls_cert *c,
		      gnutls_x509_crt_t **crts, unsigned int *n)
{
	const char *path = ld->e->cert;
	gnutls_datum_t d;
	unsigned int i;
	int rc;

	if (read_pem(ld, path, &d) < 0)
		return -1;
	rc = gnutls_x509_crt_list_import2(crts, n, &d, GNUTLS_X509_FMT_PEM, 0);
	free(d.data);
	if (rc < 0 || *n == 0) {
		complain(ld, path, "not a PEM certificate: %s",
			 rc < 0 ? gnutls_strerror(rc) : "empty");
		return -1;
	}
	if (*n > TLS_CHAIN_MAX) {
		complain(ld, path, "more than %d certificates", TLS_CHAIN_MAX);
		return -1;
	}
	if (check_dates(ld, path, *crts, *n) < 0)
		return -1;
	for (i = 0; i < *n; i++) {
		if (gnutls_pcert_import_x509(&c->pcert[i], (*crts)[i], 0) < 0) {
			complain(ld, path, "cannot use certificate %u", i + 1);
			return -1;
		}
		c->npcert++;
	}
	collect_names(c, (*crts)[0]);
	return 0;
}

static int load_key(struct tls_load *ld, struct tls_cert *c)
{
	const char *path = ld->e->key;
	gnutls_datum_t d;
	int rc;

	if (read_pem(ld, path, &d) < 0)
		return -1;
	rc = gnutls_privkey_init(&c->key);
	if (rc == 0)
		rc = gnutls_privkey_import_x509_raw(c->key, &d, GNUTLS_X509_FMT_PEM,
						    NULL, 0);
	gnutls_memset(d.data, 0, d.size);
	free(d.data);
	if (rc < 0) {
		complain(ld, path, "not an unencrypted PEM private key: %s",
			 gnutls_strerror(rc));
		return -1;
	}
	return 0;
}

static int load_one(struct tls_load *ld, struct tls_cert *c)
{
	gnutls_x509_crt_t *crts = NULL;
	unsigned int n = 0, i;
	int rc = -1;

	if (load_chain(ld, c, &crts, &n) == 0 && load_key(ld, c) == 0) {
		rc = same_key(crts[0], c->key);
		if (rc < 0) {
			ld->nerr++;
			if (ld->err)
				fprintf(ld->err, "%s: the key %s does not match "
					"the certificate %s\n", ld->e->where,
					ld->e->key, ld->e->cert);
		}
	}
	for (i = 0; i < n; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	return rc;
}

static void cert_free(struct tls_cert *c)
{
	size_t i;

	for (i = 0; i < c->npcert; i++)
		gnutls_pcert_deinit(&c->pcert[i]);
	if (c->key)
		gnutls_privkey_deinit(c->key);
	for (i = 0; i < c->nnames; i++)
		free(c->names[i]);
}

static void set_free(struct tls_set *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		cert_free(&s->c[i]);
	free(s);
}

struct tls_set *tls_set_load(const struct config *cfg, FILE *err)
{
	struct tls_load ld = { .err = err };
	struct tls_set *s;
	size_t i;

	if (!cfg->ntls_certs)
		return NULL;
	s = calloc(1, sizeof(*s) + cfg->ntls_certs * sizeof(s->c[0]));
	if (!s) {
		if (err)
			fprintf(err, "%s: out of memory\n", cfg->path);
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->n = cfg->ntls_certs;
	for (i = 0; i < s->n; i++) {
		ld.e = &cfg->tls_certs[i];
		load_one(&ld, &s->c[i]);
	}
	if (ld.nerr) {
		set_free(s);
		return NULL;
	}
	return s;
}

struct tls_set *tls_set_ref(struct tls_set *s)
{
	if (s)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

void tls_set_unref(struct tls_set *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		set_free(s);
}

bool tls_name_matches(const char *pattern, const char *name)
{
	size_t np = strlen(pattern), nn = strlen(name);
	const char *dot;

	if (nn && name[nn - 1] == '.')
		nn--;
	if (nn == 0)
		return false;
	if (pattern[0] != '*')
		return np == nn && strncasecmp(pattern, name, nn) == 0;
	/* "*.example.com": one non-empty label, then exactly ".example.com" */
	if (pattern[1] != '.' || np < 3)
		return false;
	dot = memchr(name, '.', nn);
	if (!dot || dot == name)
		return false;
	return (size_t)(name + nn - dot) == np - 1 &&
	       strncasecmp(dot, pattern + 1, np - 1) == 0;
}

size_t tls_set_pick_index(const struct tls_set *s, const char *name)
{
	size_t i, j, wild = SIZE_MAX;

	if (!name || !*name)
		return 0;
	for (i = 0; i < s->n; i++) {
		for (j = 0; j < s->c[i].nnames; j++) {
			if (!tls_name_matches(s->c[i].names[j], name))
				continue;
			if (s->c[i].names[j][0] != '*')
				return i;
			if (wild == SIZE_MAX)
				wild = i;
		}
	}
	return wild == SIZE_MAX ? 0 : wild;
}

void tls_set_pick(const struct tls_set *s, const char *name,
		  gnutls_pcert_st **pcert, unsigned int *npcert,
		  gnutls_privkey_t *key)
{
	const struct tls_cert *c = &s->c[tls_set_pick_index(s, name)];

	*pcert = (gnutls_pcert_st *)c->pcert;
	*npcert = c->npcert;
	*key = c->key;
}

const char *tls_priorities(int min_version)
{
	return min_version >= 13 ? "NORMAL:-VERS-ALL:+VERS-TLS1.3" :
		"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
}

const char *tls_version_name(int gnutls_protocol)
{
	switch (gnutls_protocol) {
	case GNUTLS_TLS1_3: return "1.3";
	case GNUTLS_TLS1_2: return "1.2";
	case GNUTLS_TLS1_1: return "1.1";
	case GNUTLS_TLS1_0: return "1.0";
	default: return "?";
	}
}
