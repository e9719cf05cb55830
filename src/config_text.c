/* config_text.c - a config file's raw text: read whole, and checked for what libconfig 1.5 gets wrong. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_text.h"

/* A config file is small; this only stops `-c /dev/zero` eating memory. */
#define FILE_MAX_BYTES ((size_t)16 << 20)
/* libconfig's own nesting limit */
#define INCLUDE_DEPTH_MAX 10

struct text_check {
	config_text_report_fn report;
	void *arg;
	bool unreadable;        /* an @include that would make libconfig exit() */
};

__attribute__((format(printf, 4, 5)))
static void text_report(struct text_check *tc, const char *file,
			unsigned line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tc->report(tc->arg, file, line, msg);
}

/* What a setting name is made of, so its digits are not taken for a
 * number ("a1"). */
static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

char *config_text_read(const char *path, const char **why)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL, *bigger;
	size_t len = 0, cap = 0, n;

	if (!f) {
		*why = strerror(errno);
		return NULL;
	}
	do {
		if (cap - len < 2) {
			cap = cap ? cap * 2 : 8192;
			bigger = cap > FILE_MAX_BYTES ? NULL : realloc(buf, cap);
			if (!bigger) {
				*why = "file is too large";
				goto free_buf;
			}
			buf = bigger;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		*why = strerror(errno);
		goto free_buf;
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
free_buf:
	free(buf);
	fclose(f);
	return NULL;
}

/* ---- checks libconfig 1.5 gets wrong, run on the raw text ---- */

static const char *skip_string(const char *p, unsigned *line)
{
	for (p++; *p && *p != '"'; p++) {
		if (*p == '\\' && p[1])
			p++;
		if (*p == '\n')
			(*line)++;
	}
	return *p ? p + 1 : p;
}

static const char *skip_comment(const char *p, unsigned *line)
{
	if (*p == '#' || p[1] == '/')
		return p + strcspn(p, "\n");
	for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
		if (*p == '\n')
			(*line)++;
	return *p ? p + 2 : p;
}

/*
 * libconfig 1.5 stores an integer literal without an L suffix in an int,
 * silently truncating 5000000000 to 705032704; catch it instead.
 */
static const char *check_number(struct text_check *tc, const char *file,
				const char *p, unsigned line)
{
	const char *d = (*p == '-' || *p == '+') ? p + 1 : p;
	int base = (d[0] == '0' && (d[1] == 'x' || d[1] == 'X')) ? 16 : 10;
	char *end;
	long long v;

	errno = 0;
	v = strtoll(p, &end, base);
	if (base == 10 && (*end == '.' || *end == 'e' || *end == 'E'))
		return end + strspn(end, "0123456789.eE+-");
	if (*end == 'L')
		return end + strspn(end, "L");
	if (errno == ERANGE || v > INT_MAX || v < INT_MIN)
		text_report(tc, file, line, "integer %.*s does not fit in 32 "
			    "bits; write it with an L suffix (%.*sL)",
			    (int)(end - p), p, (int)(end - p), p);
	return end > p ? end : p + 1;
}

static void check_int_literals(struct text_check *tc, const char *file,
			       const char *p)
{
	unsigned line = 1;

	while (*p) {
		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '"') {
			p = skip_string(p, &line);
		} else if (*p == '#' || (*p == '/' && (p[1] == '/' || p[1] == '*'))) {
			p = skip_comment(p, &line);
		} else if ((*p >= '0' && *p <= '9') ||
			   ((*p == '-' || *p == '+') && p[1] >= '0' && p[1] <= '9')) {
			p = check_number(tc, file, p, line);
		} else if (is_name_char(*p) || *p == '*') {
			/* a setting name such as a1: its digits are no number */
			while (is_name_char(*p) || *p == '*')
				p++;
		} else {
			p++;
		}
	}
}

/* The file named by an @include directive at line start p, or NULL. */
static char *include_target(const char *p)
{
	const char *q;

	p += strspn(p, " \t");
	if (strncmp(p, "@include", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
		return NULL;
	p += 8 + strspn(p + 8, " \t");
	if (*p != '"')
		return NULL;
	q = p + 1 + strcspn(p + 1, "\"\n");
	return *q == '"' ? strndup(p + 1, (size_t)(q - p - 1)) : NULL;
}

static void check_text(struct text_check *tc, const char *file, const char *text,
		       const char *dir, int depth);

/*
 * libconfig 1.5 calls exit() when an @include names a directory, which
 * would kill a running daemon on SIGHUP; refuse such files up front.
 * Missing files are left to libconfig, which reports them properly.
 */
static void check_include(struct text_check *tc, const char *file, unsigned line,
			  const char *name, const char *dir, int depth)
{
	char path[PATH_MAX];
	struct stat st;
	const char *why;
	char *text;
	int n;

	n = snprintf(path, sizeof(path), "%s%s%s", dir ? dir : "",
		     dir ? "/" : "", name);
	if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &st) != 0)
		return;
	if (!S_ISREG(st.st_mode)) {
		text_report(tc, file, line,
			    "@include \"%s\" is not a regular file", name);
		tc->unreadable = true;
		return;
	}
	if (depth >= INCLUDE_DEPTH_MAX)
		return;
	text = config_text_read(path, &why);
	if (!text)
		return;
	check_text(tc, name, text, dir, depth + 1);
	free(text);
}

static void check_text(struct text_check *tc, const char *file, const char *text,
		       const char *dir, int depth)
{
	const char *p = text;
	unsigned line = 1;
	char *name;

	check_int_literals(tc, file, text);
	for (; p; line++) {
		name = include_target(p);
		if (name) {
			check_include(tc, file, line, name, dir, depth);
			free(name);
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
}

bool config_text_check(const char *text, const char *dir,
		       config_text_report_fn report, void *arg)
{
	struct text_check tc = { report, arg, false };

	check_text(&tc, NULL, text, dir, 0);
	return tc.unreadable;
}
