# fuzz.mk - libFuzzer builds and runs of src/headers.c, src/h1.c and src/trace.c (included from the Makefile).
#
#   make fuzz          build, then fuzz each target $(FUZZ_SECONDS) s (default 300)
#   make fuzz-smoke    build, then fuzz each target $(FUZZ_SMOKE_SECONDS) s (default 10)
#   make fuzz-deps     check (as root: install) clang and libclang-rt-14-dev
#   FUZZ_TARGETS=h1    only some of the targets (default: headers h1 trace)
#
# Each run starts from a fresh copy of the target's seeds (fuzz_headers:
# tests/fuzz/corpus, fuzz_h1: tests/fuzz/corpus_h1, fuzz_trace:
# tests/fuzz/corpus_trace) in
# build/fuzz/corpus_NAME; a crash leaves build/fuzz/NAME-crash-* (replay:
# build/fuzz/fuzz_NAME FILE) and fails the target.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_TARGETS ?= headers h1 trace
FUZZ_DIR := $(or $(B),build)/fuzz
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
FUZZ_ARGS := -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

# Each target: its sources (besides its own file) and its seeds.
FUZZ_SRCS_headers := src/headers.c
FUZZ_SRCS_h1 := src/h1.c src/headers.c
FUZZ_SRCS_trace := src/trace.c
FUZZ_SEEDS_headers := tests/fuzz/corpus
FUZZ_SEEDS_h1 := tests/fuzz/corpus_h1
FUZZ_SEEDS_trace := tests/fuzz/corpus_trace
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)

.PHONY: fuzz fuzz-smoke fuzz-deps

fuzz-deps:
	@scripts/deps.sh fuzz

.SECONDEXPANSION:
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_SRCS_$$*) $(wildcard src/*.h) | fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc -o $@ $< $(FUZZ_SRCS_$*)

# $(call fuzz_run,NAME,SECONDS): fuzz NAME on a fresh copy of its seeds.
define fuzz_run
	@rm -rf $(FUZZ_DIR)/corpus_$(1) && mkdir -p $(FUZZ_DIR)/corpus_$(1)
	@cp $(FUZZ_SEEDS_$(1))/* $(FUZZ_DIR)/corpus_$(1)/
	cd $(FUZZ_DIR) && ./fuzz_$(1) $(FUZZ_ARGS) -max_total_time=$(2) \
		-artifact_prefix=./$(1)- corpus_$(1)

endef

fuzz: $(FUZZ_BINS)
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_SECONDS)))

fuzz-smoke: $(FUZZ_BINS)
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_SMOKE_SECONDS)))
