/* retry.c - whether a failed upstream attempt may be made again, and the names metrics give reasons and outcomes. */
#include <string.h>

#include "retry.h"

bool retry_decide(const struct retry_in *in)
{
	/* a shift by 32 or more is undefined: range first */
	if ((int)in->reason < 0 || (int)in->reason >= RETRY_REASON__COUNT)
		return false;
	if (!((1u << in->reason) & in->retry_on))
		return false;
	if (in->responded)
		return false;
	/* a connect failure sent nothing: even a POST may go again */
	if (!in->idempotent && in->reason != RETRY_CONNECT_FAILURE)
		return false;
	if (!in->body_held)
		return false;
	if (in->attempts >= 1 + in->retries)
		return false;
	return in->budget_left && in->retry_budget;
}

int retry_reason_of_status(int status)
{
	switch (status) {
	case 502:
		return RETRY_502;
	case 503:
		return RETRY_503;
	case 504:
		return RETRY_504;
	default:
		return -1;
	}
}

enum retry_outcome retry_outcome_of(enum retry_reason reason)
{
	switch (reason) {
	case RETRY_CONNECT_FAILURE:
		return RETRY_OUT_CONNECT_FAILURE;
	case RETRY_RESET:
		return RETRY_OUT_RESET;
	case RETRY_TIMEOUT:
		return RETRY_OUT_TIMEOUT;
	default:
		return RETRY_OUT_STATUS_5XX;
	}
}

const char *retry_reason_name(int reason)
{
	static const char *const names[RETRY_REASON__COUNT] = {
		[RETRY_CONNECT_FAILURE] = "connect_failure",
		[RETRY_RESET] = "reset",
		[RETRY_TIMEOUT] = "timeout",
		[RETRY_502] = "502",
		[RETRY_503] = "503",
		[RETRY_504] = "504",
	};

	if (reason < 0 || reason >= RETRY_REASON__COUNT)
		return NULL;
	return names[reason];
}

const char *retry_outcome_name(int outcome)
{
	static const char *const names[] = {
		[RETRY_OUT_OK] = "ok",
		[RETRY_OUT_CONNECT_FAILURE] = "connect_failure",
		[RETRY_OUT_RESET] = "reset",
		[RETRY_OUT_TIMEOUT] = "timeout",
		[RETRY_OUT_STATUS_5XX] = "status_5xx",
		[RETRY_OUT_CANCELLED] = "cancelled",
	};

	if (outcome < 0 || outcome >= (int)(sizeof(names) / sizeof(names[0])))
		return NULL;
	return names[outcome];
}

bool retry_idempotent(const char *method)
{
	static const char *const methods[] = {
		"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE",
	};
	size_t i;

	if (!method)
		return false;
	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (strcmp(method, methods[i]) == 0)
			return true;
	}
	return false;
}
