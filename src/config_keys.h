/* config_keys.h - loading a config: tables of keys applied to libconfig groups, and each problem blamed on its FILE:LINE. */
#ifndef CTXPROXY_CONFIG_KEYS_H
#define CTXPROXY_CONFIG_KEYS_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;

/* Keeps now + timeout far from int64 nanosecond overflow (~24.8 days). */
#define CONFIG_TIMEOUT_MAX_MS ((int64_t)INT32_MAX)

/* One load in progress; lives on config_load's stack. */
struct config_loader {
	const char *name;       /* FILE in messages when libconfig has none */
	const char *dir;        /* the config file's directory, which relative
				   file names are resolved against; NULL (a
				   config from a string): left as they are */
	FILE *err;              /* NULL: count problems, print nothing */
	int nerr;
	struct config *cfg;
	const config_setting_t *routes;  /* parsed after defaults, wherever it is */
};

enum config_key_kind {
	CONFIG_KEY_INT,
	CONFIG_KEY_INT64,
	CONFIG_KEY_BOOL,
	CONFIG_KEY_STRING,
	CONFIG_KEY_CUSTOM,
};

/* One key a group may hold; a table of them describes the group. */
struct config_key {
	const char *name;
	enum config_key_kind kind;
	size_t off;             /* where the value lands in the target object */
	int64_t min, max;       /* integers only */
	/* CONFIG_KEY_STRING: validates (and may normalise) the stored copy;
	 * CONFIG_KEY_CUSTOM: does the whole job, given the setting and the
	 * target object (not the field). */
	void (*check)(struct config_loader *ld, const config_setting_t *s,
		      void *obj);
	bool required;
};

#define CONFIG_NKEYS(t) (sizeof(t) / sizeof((t)[0]))

/* Counts a problem and writes "FILE:LINE: message\n" to ld->err (file
 * NULL: ld->name). */
__attribute__((format(printf, 4, 5)))
void config_report(struct config_loader *ld, const char *file, unsigned line,
		   const char *fmt, ...);

/* config_report() blaming setting s: its own file (it may come from an
 * @include) and line. */
__attribute__((format(printf, 3, 4)))
void config_complain(struct config_loader *ld, const config_setting_t *s,
		     const char *fmt, ...);

/* strdup(str), or NULL after complaining about s. */
char *config_dup_or_complain(struct config_loader *ld,
			     const config_setting_t *s, const char *str);

/* Applies every member of group g to obj through keys[0, nkeys) (at most
 * 64); a member no key names is refused as "unknown key 'x'" + where.
 * Returns a bit per table entry seen, for the caller's required keys. */
uint64_t config_apply_group(struct config_loader *ld, const config_setting_t *g,
			    const struct config_key *keys, size_t nkeys,
			    void *obj, const char *where);

/* Files a configuration names are found like @include files, next to
 * it: *p, when relative, becomes "dir/p" (the old string freed).  0 or
 * -ENOMEM (*p unchanged). */
int config_path_under(char **p, const char *dir);

#endif
