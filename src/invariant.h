/* invariant.h - ASSERT(): invariants checked in SANITIZE= builds, free otherwise. */
#ifndef CTXPROXY_INVARIANT_H
#define CTXPROXY_INVARIANT_H

/*
 * The invariants the code relies on (a reference is never dropped twice, a
 * handler is added to a loop once, a request's phase only moves forward)
 * are written as ASSERT(cond).  Builds with SANITIZE= define
 * CTXPROXY_ASSERTS, and a broken invariant aborts there with its place, so
 * the test suite under the sanitizers checks them; a release build
 * evaluates nothing (the condition is only type-checked).
 */
#ifdef CTXPROXY_ASSERTS
#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, cold)) static inline void
invariant_failed(const char *cond, const char *file, int line)
{
	fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, cond);
	abort();
}

#define ASSERT(cond) \
	((cond) ? (void)0 : invariant_failed(#cond, __FILE__, __LINE__))
#else
#define ASSERT(cond) ((void)sizeof(!(cond)))
#endif

#endif
