# Makefile - build, test, demo, install, package and benchmark ctxproxy.
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
MANDIR ?= $(PREFIX)/share/man
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
ifeq ($(origin CC),default)
CC := gcc
endif
SANITIZE ?=

PKGS := libmicrohttpd libcurl libconfig libsystemd gnutls
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE_CFLAGS := -std=gnu11 -O2 -g -D_GNU_SOURCE $(WARN) -pthread
# SANITIZE=address,undefined: the sanitizers at compile and link time, and
# the internal assertions (src/assert.h) compiled in.
ifneq ($(SANITIZE),)
BASE_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -DCTXPROXY_ASSERTS
SAN_LDFLAGS := -fsanitize=$(SANITIZE)
endif

# pkg-config runs only when a recipe that compiles or links is expanded (the
# flags stamp's counts: so `make clean` never needs the libraries), and at
# most once per query per make invocation: each variable below replaces
# itself with its value the first time it is expanded. A missing module stops
# make with one message naming it, before any compiler runs.
pkg_probe_sh = if ! command -v pkg-config >/dev/null 2>&1; then echo pkg-config; \
	elif ! pkg-config --exists $(PKGS); then \
	for m in $(PKGS); do pkg-config --exists "$$m" || echo "$$m"; done; fi
PKG_MISSING = $(eval PKG_MISSING := $$(strip $$(shell $$(pkg_probe_sh))))$(PKG_MISSING)
PKG_INSTALL_HINT := to install: scripts/deps.sh build, as root (as a user it \
	prints the apt-get line)
pkg_check = $(if $(PKG_MISSING),$(if $(filter pkg-config,$(PKG_MISSING)),\
	$(error pkg-config is not installed; $(PKG_INSTALL_HINT)),\
	$(error missing pkg-config module(s): $(PKG_MISSING); $(PKG_INSTALL_HINT))))
PKG_CFLAGS = $(pkg_check)$(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS = $(pkg_check)$(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)
# HARDEN_*: set by `make deb` only (below).
HARDEN_CFLAGS :=
HARDEN_LDFLAGS :=
ALL_CFLAGS = $(BASE_CFLAGS) $(HARDEN_CFLAGS) $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = -pthread $(SAN_LDFLAGS) $(HARDEN_LDFLAGS) $(LDFLAGS)

B := build
SRCS := $(wildcard src/*.c)
OBJS := $(SRCS:src/%.c=$(B)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
TEST_PROGS := $(B)/tests/backend $(B)/tests/ws_echo $(B)/tests/otlp_sink

.PHONY: all check check-valgrind unit demo install deb clean bench deps soak soak-smoke

# Plain `make` only compiles: no package queries. The targets that need more
# than a compiler (check, check-valgrind, demo, bench, fuzz, deb) run
# scripts/deps.sh first, which installs what is missing (as root) or says
# how; `make deps` does the same for the build alone.
all: $(B)/ctxproxy

deps:
	@scripts/deps.sh build

# Rebuild everything when the flags change (e.g. SANITIZE= on or off).
FLAGS_STAMP := $(B)/.flags
$(FLAGS_STAMP): FORCE | $(B)/obj
	@echo '$(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $@ || \
		echo '$(ALL_CFLAGS) $(ALL_LDFLAGS)' > $@

.PHONY: FORCE
FORCE:

$(B)/obj/%.o: src/%.c $(wildcard src/*.h) $(FLAGS_STAMP) | $(B)/obj
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/ctxproxy: $(OBJS)
	$(CC) -o $@ $(OBJS) $(ALL_LDFLAGS) $(PKG_LIBS)

# Each unit test links only the src/ objects it names, so a link that succeeds
# proves the layering (test_context links context.o alone: contexts know no
# HTTP), and only the pkg-config modules in TEST_PKGS_name (default: all of
# PKGS). A new tests/unit/test_NAME.c needs a TEST_OBJS_NAME line: without one
# its build stops with a message asking for it (no silent default to every
# object, which would prove nothing). TEST_LDFLAGS_name: extra link flags.
TEST_OBJS_context := context
TEST_PKGS_context :=
TEST_OBJS_loop := loop
TEST_PKGS_loop :=
TEST_OBJS_headers := headers
TEST_PKGS_headers :=
TEST_OBJS_route := route config config_keys config_upstream config_syntax config_text headers log
TEST_PKGS_route := libconfig
# headers: config.c is about to use headers_is_token().
TEST_OBJS_config := config config_keys config_upstream config_syntax config_text headers log
TEST_PKGS_config := libconfig
TEST_OBJS_log := log
TEST_OBJS_h1 := h1 headers
TEST_PKGS_h1 :=
TEST_PKGS_log :=
TEST_OBJS_retry := retry
TEST_PKGS_retry :=
TEST_OBJS_pool := pool retry
TEST_PKGS_pool :=
TEST_OBJS_metrics := metrics context retry
TEST_PKGS_metrics :=
TEST_OBJS_health := health metrics context retry log
TEST_PKGS_health := libcurl
TEST_OBJS_tls := tls config config_keys config_upstream config_syntax config_text headers log
TEST_PKGS_tls := gnutls libconfig
TEST_OBJS_tunnel := tunnel loop context
TEST_OBJS_curlmux := curlmux loop context
TEST_PKGS_curlmux := libcurl
TEST_PKGS_tunnel :=
TEST_OBJS_trace := trace
TEST_PKGS_trace :=
TEST_OBJS_otlp := otlp metrics context retry log
TEST_PKGS_otlp := libcurl
TEST_OBJS_watch := watch
TEST_PKGS_watch :=
# test_watch fails watch.c's allocations on purpose and sees a snapshot's free.
TEST_LDFLAGS_watch := -Wl,--wrap=malloc,--wrap=realloc,--wrap=free
TEST_OBJS_admin_json := admin_json context
TEST_PKGS_admin_json :=
TEST_OBJS_admin_watch := admin_watch admin_json watch metrics context retry
TEST_PKGS_admin_watch :=

# $(call test_objs,NAME), $(call test_libs,NAME): what test_NAME links.
test_objs = $(if $(filter undefined,$(origin TEST_OBJS_$(1))),$(error \
	tests/unit/test_$(1).c has no object list: add a line \
	"TEST_OBJS_$(1) := <the src/ modules it needs>" to the Makefile),\
	$(strip $(TEST_OBJS_$(1):%=$(B)/obj/%.o)))
test_libs = $(foreach m,$(if $(filter undefined,$(origin TEST_PKGS_$(1))),\
	$(PKGS),$(TEST_PKGS_$(1))),$(call pkg_libs_of,$(m)))
# $(call pkg_libs_of,MODULE): its link flags, one pkg-config run per module.
pkg_libs_of = $(pkg_check)$(if $(filter undefined,$(origin PKG_LIBS.$(1))),\
	$(eval PKG_LIBS.$(1) := $$(shell pkg-config --libs $(1))))$(PKG_LIBS.$(1))

.SECONDEXPANSION:
$(B)/tests/test_%: tests/unit/test_%.c $$(call test_objs,$$*) $(FLAGS_STAMP) | $(B)/tests
	$(CC) -Isrc $(ALL_CFLAGS) -o $@ $< $(call test_objs,$*) $(ALL_LDFLAGS) \
		$(TEST_LDFLAGS_$*) $(call test_libs,$*) -lcmocka

$(B)/tests/%: tests/%.c $(FLAGS_STAMP) | $(B)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS)

$(B)/obj $(B)/tests:
	mkdir -p $@

check:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory $(B)/ctxproxy $(UNIT_BINS) $(TEST_PROGS)
	@SANITIZE=$(SANITIZE) scripts/check.sh $(UNIT_BINS)

# The integration suite with every daemon under valgrind's memcheck, in two
# shards at once (a memcheck daemon keeps one core busy; ~5 minutes here).
check-valgrind:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory $(B)/ctxproxy $(TEST_PROGS)
	@CTXPROXY_VALGRIND=1 python3 tests/integration/run.py -j 2

unit: $(UNIT_BINS)
	@scripts/check.sh --unit-only $(UNIT_BINS)

demo:
	@scripts/deps.sh demo
	@$(MAKE) --no-print-directory $(B)/ctxproxy $(TEST_PROGS)
	@python3 tests/demo.py

# Mixed faults for SOAK_SECONDS, every request accounted for (tests/soak.py);
# the table goes to bench/SOAK.md; then tests/connhold.py holds as many client
# connections as the descriptor limits allow (10,000 here) for a minute.
# Not part of check; soak-smoke is its 60 s version.
SOAK_SECONDS ?= 600
soak:
	@$(MAKE) --no-print-directory $(B)/ctxproxy $(B)/tests/backend
	@python3 tests/soak.py --seconds $(SOAK_SECONDS) --write bench/SOAK.md
	@python3 tests/connhold.py --hold 60 --write bench/SOAK.md

soak-smoke:
	@$(MAKE) --no-print-directory $(B)/ctxproxy $(B)/tests/backend
	@python3 tests/soak.py --seconds 60

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory $(B)/ctxproxy $(TEST_PROGS)
	@bench/run.sh

# Files under SYSCONFDIR are the operator's: installed once, never overwritten.
# The unit names the program and its config by path: rewritten for SBINDIR
# and SYSCONFDIR.
install: $(B)/ctxproxy
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/ctxproxy \
		$(DESTDIR)$(LOGROTATEDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(B)/ctxproxy $(DESTDIR)$(SBINDIR)/ctxproxy
	test -e $(DESTDIR)$(SYSCONFDIR)/ctxproxy/ctxproxy.conf || \
		install -m 0644 conf/ctxproxy.conf $(DESTDIR)$(SYSCONFDIR)/ctxproxy/ctxproxy.conf
	test -e $(DESTDIR)$(LOGROTATEDIR)/ctxproxy || \
		install -m 0644 conf/logrotate.d/ctxproxy $(DESTDIR)$(LOGROTATEDIR)/ctxproxy
	sed -e 's|/usr/sbin/ctxproxy|$(SBINDIR)/ctxproxy|g' \
		-e 's|/etc/ctxproxy/|$(SYSCONFDIR)/ctxproxy/|g' \
		systemd/ctxproxy.service > $(DESTDIR)$(UNITDIR)/ctxproxy.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ctxproxy.service
	install -m 0644 man/ctxproxy.8 $(DESTDIR)$(MANDIR)/man8/ctxproxy.8

# build/ctxproxy_VERSION_ARCH.deb from a staged install (scripts/mkdeb.sh,
# metadata in conf/deb/). DEB_VERSION: default src/main.c's CTXPROXY_VERSION;
# DEB_OUT: where the .deb goes; DEB_STAGE: the staging tree, made anew.
# The program is built with what dpkg-buildflags gives with hardening=+all
# (gcc makes PIE by default on Debian), so after a plain `make` it is
# rebuilt; `make -o build/ctxproxy deb` packages the one there is.
DEB_VERSION ?=
DEB_OUT ?= $(B)
DEB_STAGE ?= $(B)/deb-root
deb: HARDEN_CFLAGS := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wformat \
	-Werror=format-security
deb: HARDEN_LDFLAGS := -Wl,-z,relro -Wl,-z,now
deb: $(B)/ctxproxy
	@scripts/deps.sh deb
	@rm -rf $(DEB_STAGE)
	@$(MAKE) -s --no-print-directory -o $(B)/ctxproxy install PREFIX=/usr \
		SYSCONFDIR=/etc UNITDIR=/lib/systemd/system DESTDIR=$(abspath $(DEB_STAGE))
	@scripts/mkdeb.sh $(DEB_STAGE) $(DEB_OUT) $(DEB_VERSION)

clean:
	rm -rf $(B)

include fuzz.mk

-include $(OBJS:.o=.d)
