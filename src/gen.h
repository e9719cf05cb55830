/* gen.h - one loaded configuration and its route table, shared by reference. */
#ifndef CTXPROXY_GEN_H
#define CTXPROXY_GEN_H

#include "config.h"
#include "route.h"
#include "tls.h"

/*
 * A reload makes a new generation; workers switch to it, while requests
 * already running keep the one they started with (their route and
 * timeouts).  The last reference frees the config and the route table.
 * References may be taken and dropped from any thread.
 */
struct gen {
	struct config *cfg;
	struct route_table *routes;
	struct tls_set *tls;      /* the TLS listeners' certificates, or NULL */
};

/* Take over cfg and the reference on tls (may be NULL; both freed with the
 * generation) and build its route table.  Returns NULL on ENOMEM (cfg and
 * tls are released). */
struct gen *gen_new(struct config *cfg, struct tls_set *tls);

struct gen *gen_ref(struct gen *g);

/* gen_unref(NULL) is a no-op. */
void gen_unref(struct gen *g);

#endif
