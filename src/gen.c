/* gen.c - one loaded configuration and its route table, shared by reference. */
#include <stdatomic.h>
#include <stdlib.h>

#include "gen.h"

struct gen_impl {
	struct gen pub;            /* first: a struct gen * is a gen_impl * */
	atomic_int refs;
};

struct gen *gen_new(struct config *cfg, struct tls_set *tls)
{
	struct gen_impl *g = calloc(1, sizeof(*g));

	if (!g)
		goto free_cfg;
	g->pub.cfg = cfg;
	g->pub.tls = tls;
	g->pub.routes = route_table_new(cfg);
	if (!g->pub.routes)
		goto free_gen;
	atomic_init(&g->refs, 1);
	return &g->pub;
free_gen:
	free(g);
free_cfg:
	tls_set_unref(tls);
	config_free(cfg);
	return NULL;
}

struct gen *gen_ref(struct gen *g)
{
	atomic_fetch_add(&((struct gen_impl *)g)->refs, 1);
	return g;
}

void gen_unref(struct gen *g)
{
	struct gen_impl *gi = (struct gen_impl *)g;

	if (!g || atomic_fetch_sub(&gi->refs, 1) != 1)
		return;
	route_table_free(g->routes);
	tls_set_unref(g->tls);
	config_free(g->cfg);
	free(gi);
}
