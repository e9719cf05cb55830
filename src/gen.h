/* gen.h - one loaded configuration and its route table, shared by reference. */
#ifndef CTXPROXY_GEN_H
#define CTXPROXY_GEN_H

#include "config.h"
#include "route.h"

/*
 * A reload makes a new generation; workers switch to it, while requests
 * already running keep the one they started with (their route and
 * timeouts).  The last reference frees the config and the route table.
 * References may be taken and dropped from any thread.
 */
struct gen {
	struct config *cfg;
	struct route_table *routes;
};

/* Take over cfg (freed with the generation) and build its route table.
 * Returns NULL on ENOMEM (cfg is freed). */
struct gen *gen_new(struct config *cfg);

struct gen *gen_ref(struct gen *g);

/* gen_unref(NULL) is a no-op. */
void gen_unref(struct gen *g);

#endif
