/* tls.h - the TLS listeners' certificate set: loaded and checked with GnuTLS, chosen by SNI, shared by reference. */
#ifndef CTXPROXY_TLS_H
#define CTXPROXY_TLS_H

#include <stdbool.h>
#include <stdio.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

struct config;

/*
 * A set is immutable once loaded: a configuration generation holds one,
 * and every TLS connection holds the one it was accepted under until it
 * closes, so a reload never frees a certificate under a handshake.
 * References may be taken and dropped from any thread.
 */
struct tls_set;

/* Load and check every tls_certificates entry of cfg: each certificate
 * chain and key must be readable, parse, be valid now (not expired) and
 * belong together.  Each problem is written to err as
 * "FILE:LINE: PATH: why\n" (FILE:LINE of the entry in the configuration).
 * Returns NULL after any problem, or when cfg has no certificates. */
struct tls_set *tls_set_load(const struct config *cfg, FILE *err);

struct tls_set *tls_set_ref(struct tls_set *s);

/* tls_set_unref(NULL) is a no-op. */
void tls_set_unref(struct tls_set *s);

/* The certificate for server name `name` (SNI; NULL or "" when the client
 * sent none): the first whose names match it exactly, else the first whose
 * wildcard matches it, else the first of the set.  The pointers stay valid
 * while the caller holds its reference on s. */
void tls_set_pick(const struct tls_set *s, const char *name,
		  gnutls_pcert_st **pcert, unsigned int *npcert,
		  gnutls_privkey_t *key);

/* Index of the certificate tls_set_pick would choose (for tests). */
size_t tls_set_pick_index(const struct tls_set *s, const char *name);

/* A certificate name (a DNS SAN or CN, maybe "*.example.com") matches
 * server name `name`: case-insensitive, one trailing dot of name ignored;
 * a wildcard stands for exactly one whole left-most label. */
bool tls_name_matches(const char *pattern, const char *name);

/* GnuTLS priority string for tls_min_version 12 or 13: GnuTLS's default
 * ciphers, protocol versions from the minimum up to TLS 1.3. */
const char *tls_priorities(int min_version);

/* The protocol version of a GnuTLS session for the access log: "1.3",
 * "1.2", ... or "?" */
const char *tls_version_name(int gnutls_protocol);

#endif
