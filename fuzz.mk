# fuzz.mk - libFuzzer build and runs of src/headers.c (included from the Makefile).
#
#   make fuzz          build, then fuzz $(FUZZ_SECONDS) s (default 300)
#   make fuzz-smoke    build, then fuzz $(FUZZ_SMOKE_SECONDS) s (default 10)
#   make fuzz-deps     check (as root: install) clang and libclang-rt-14-dev
#
# Each run starts from a fresh copy of tests/fuzz/corpus in build/fuzz/corpus;
# a crash leaves build/fuzz/crash-* (replay: build/fuzz/fuzz_headers FILE)
# and fails the target.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_DIR := $(or $(B),build)/fuzz
FUZZ_BIN := $(FUZZ_DIR)/fuzz_headers
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
FUZZ_ARGS := -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

.PHONY: fuzz fuzz-smoke fuzz-deps

fuzz-deps:
	@scripts/deps.sh fuzz

$(FUZZ_BIN): tests/fuzz/fuzz_headers.c src/headers.c src/headers.h | fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc -o $@ tests/fuzz/fuzz_headers.c src/headers.c

# $(call fuzz_run,SECONDS): fuzz on a fresh copy of the seed corpus.
define fuzz_run
	@rm -rf $(FUZZ_DIR)/corpus && mkdir -p $(FUZZ_DIR)/corpus
	@cp tests/fuzz/corpus/* $(FUZZ_DIR)/corpus/
	cd $(FUZZ_DIR) && ./fuzz_headers $(FUZZ_ARGS) -max_total_time=$(1) \
		-artifact_prefix=./ corpus
endef

fuzz: $(FUZZ_BIN)
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: $(FUZZ_BIN)
	$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))
