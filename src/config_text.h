/* config_text.h - a config file's raw text: read whole, and checked for what libconfig 1.5 gets wrong. */
#ifndef CTXPROXY_CONFIG_TEXT_H
#define CTXPROXY_CONFIG_TEXT_H

#include <stdbool.h>

/* One problem: its file (NULL for the text given to config_text_check,
 * else an @include's name), its line and a message. */
typedef void (*config_text_report_fn)(void *arg, const char *file,
				      unsigned line, const char *msg);

/* The whole file at path, NUL-terminated (at most 16 MiB); free() it.
 * NULL with *why set to a short reason on failure. */
char *config_text_read(const char *path, const char **why);

/* Check text, and what it @includes (looked up in dir, NULL for the
 * current directory; as deep as libconfig follows), for what libconfig 1.5
 * gets wrong: an integer literal without an L suffix that does not fit in
 * 32 bits (libconfig truncates it silently), and an @include of something
 * that is not a regular file (libconfig calls exit()).  Each problem goes
 * to report.  Returns true when such an @include was found: the text must
 * not be given to libconfig. */
bool config_text_check(const char *text, const char *dir,
		       config_text_report_fn report, void *arg);

#endif
