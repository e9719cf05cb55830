/* config_keys.c - loading a config: tables of keys applied to libconfig groups, and each problem blamed on its FILE:LINE. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"

static void vreport(struct config_loader *ld, const char *file, unsigned line,
		    const char *fmt, va_list ap)
{
	ld->nerr++;
	if (!ld->err)
		return;
	fprintf(ld->err, "%s:%u: ", file ? file : ld->name, line);
	vfprintf(ld->err, fmt, ap);
	fputc('\n', ld->err);
}

void config_report(struct config_loader *ld, const char *file, unsigned line,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(ld, file, line, fmt, ap);
	va_end(ap);
}

void config_complain(struct config_loader *ld, const config_setting_t *s,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(ld, config_setting_source_file(s),
		config_setting_source_line(s), fmt, ap);
	va_end(ap);
}

char *config_dup_or_complain(struct config_loader *ld,
			     const config_setting_t *s, const char *str)
{
	char *copy = strdup(str);

	if (!copy)
		config_complain(ld, s, "out of memory");
	return copy;
}

static bool get_int(struct config_loader *ld, const config_setting_t *s,
		    const struct config_key *k, int64_t *v)
{
	int type = config_setting_type(s);

	if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
		config_complain(ld, s, "'%s' must be an integer", k->name);
		return false;
	}
	*v = config_setting_get_int64(s);
	if (*v >= k->min && *v <= k->max)
		return true;
	if (k->max == INT64_MAX)
		config_complain(ld, s, "'%s' must be at least %" PRId64, k->name,
				k->min);
	else
		config_complain(ld, s, "'%s' must be between %" PRId64 " and %"
				PRId64, k->name, k->min, k->max);
	return false;
}

static void apply_string(struct config_loader *ld, const config_setting_t *s,
			 const struct config_key *k, void *obj)
{
	char **field = (char **)((char *)obj + k->off);

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		config_complain(ld, s, "'%s' must be a string", k->name);
		return;
	}
	free(*field);
	*field = config_dup_or_complain(ld, s, config_setting_get_string(s));
	if (*field && k->check)
		k->check(ld, s, obj);
}

static void apply_key(struct config_loader *ld, const config_setting_t *s,
		      const struct config_key *k, void *obj)
{
	char *field = (char *)obj + k->off;
	int64_t v;

	switch (k->kind) {
	case CONFIG_KEY_INT:
	case CONFIG_KEY_INT64:
		if (!get_int(ld, s, k, &v))
			return;
		if (k->kind == CONFIG_KEY_INT)
			*(int *)field = (int)v;
		else
			*(int64_t *)field = v;
		return;
	case CONFIG_KEY_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			config_complain(ld, s, "'%s' must be true or false",
					k->name);
		else
			*(bool *)field = config_setting_get_bool(s);
		return;
	case CONFIG_KEY_STRING:
		apply_string(ld, s, k, obj);
		return;
	case CONFIG_KEY_CUSTOM:
		k->check(ld, s, obj);
		return;
	}
}

uint64_t config_apply_group(struct config_loader *ld, const config_setting_t *g,
			    const struct config_key *keys, size_t nkeys,
			    void *obj, const char *where)
{
	uint64_t seen = 0;
	int i, n = config_setting_length(g);
	size_t k;

	for (i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);

		for (k = 0; k < nkeys; k++)
			if (strcmp(keys[k].name, name) == 0)
				break;
		if (k == nkeys) {
			config_complain(ld, s, "unknown key '%s'%s", name, where);
			continue;
		}
		seen |= UINT64_C(1) << k;
		apply_key(ld, s, &keys[k], obj);
	}
	return seen;
}

int config_path_under(char **p, const char *dir)
{
	size_t n;
	char *abs;

	if (!*p || (*p)[0] == '/')
		return 0;
	n = strlen(dir) + strlen(*p) + 2;
	abs = malloc(n);
	if (!abs)
		return -ENOMEM;
	snprintf(abs, n, "%s/%s", dir, *p);
	free(*p);
	*p = abs;
	return 0;
}
