# Thin wrapper over CMake. `make` builds Release into build/, `make test` builds Debug with
# ASan+UBSan into build-asan/ and runs every test, `make run` serves, `make bench` measures,
# `make install PREFIX=/usr/local` installs the library, headers, ivy.pc, the CMake package and
# the ivy command (DESTDIR is honoured, for packaging).
# `make fuzz` runs each libFuzzer target (fuzz/) for FUZZ_SECONDS under ASan+UBSan.
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
TEST_DEPS ?= wrk nginx-light python3 libcurl4-openssl-dev libhiredis-dev libpq-dev redis-server \
             postgresql openssl
BENCH_DEPS ?= wrk nginx-light h2o golang-go golang-github-valyala-fasthttp-dev python3-gevent \
              python3-eventlet libboost-context-dev libhiredis-dev redis-server openssl
FUZZ_DEPS ?= clang libfuzzer-14-dev
FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?= http_parse http_chunked load_resp http_conn

.PHONY: all release debug test run bench fuzz fuzz-coverage deps clean format install

all: release

deps:
	@scripts/deps.sh

release: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build -j $(JOBS)

debug:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DIVY_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

test:
	@scripts/deps.sh $(TEST_DEPS)
	@$(MAKE) --no-print-directory debug
	@# serially: several tests time sleeps and respawns, and two of them saturate both cores
	@cd build-asan && ctest --output-on-failure

# The prefix goes into the configuration too: it decides the library directory
# (lib/x86_64-linux-gnu under /usr on Debian, lib elsewhere).
install: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$(PREFIX)" >/dev/null
	@cmake --build build -j $(JOBS)
	@DESTDIR="$(DESTDIR)" cmake --install build

run: release
	./build/apps/ivy serve $(ARGS)

bench:
	@scripts/deps.sh $(BENCH_DEPS)
	@$(MAKE) --no-print-directory release
	@set -e; for b in build/bench/*; do \
	  case "$${b##*/}" in raw_*_server) continue;; esac; \
	  [ -x "$$b" ] && [ -f "$$b" ] && echo "== $$b" && "$$b"; done; \
	  for s in bench/*.sh; do [ -f "$$s" ] && echo "== $$s" && bash "$$s"; done; true

# Each target: its harness and the one source it fuzzes, built with clang's libFuzzer, and the
# longest input to try (past the parser's 8 KiB head limit; the framer re-reads a partial head
# whole at each piece, so long inputs only slow it down). New inputs
# that add coverage go to build-fuzz/corpus-<target> (not kept); crashes to fuzz/crashes/<target>/
# (kept: once fixed, rename each to say what it was, drop the crash- prefix, and commit it with the
# fix; `make test` replays them).
FUZZ_SRC_http_parse = http/parse.c
FUZZ_SRC_http_chunked = http/chunked.c
FUZZ_SRC_load_resp = apps/load_resp.c
# A whole connection: the runtime, io and the HTTP server, on a real hub and loopback sockets.
FUZZ_SRC_http_conn = $(filter-out runtime/version.c,$(wildcard runtime/*.c io/*.c http/*.c)) \
  runtime/switch_$(shell uname -m).S -Iruntime -Iio $(shell pkg-config --cflags --libs liburing openssl) -lpthread
FUZZ_CFLAGS = -std=gnu11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -Iinclude -Ihttp -Iapps -Ifuzz

fuzz:
	@scripts/deps.sh $(FUZZ_DEPS)
	@mkdir -p build-fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  case $$t in http_parse) src="$(FUZZ_SRC_http_parse)"; opts="-max_len=12288";; \
	    http_chunked) src="$(FUZZ_SRC_http_chunked)"; opts="-max_len=8192";; \
	    load_resp) src="$(FUZZ_SRC_load_resp)"; opts="-max_len=1024";; \
	    http_conn) src="$(FUZZ_SRC_http_conn)"; opts="-max_len=4096 -detect_leaks=1";; \
	    *) echo "no such fuzz target: $$t"; exit 1;; esac; \
	  clang $(FUZZ_CFLAGS) -o build-fuzz/$$t fuzz/$$t.c $$src; \
	  mkdir -p build-fuzz/corpus-$$t fuzz/crashes/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -dict=fuzz/http.dict $$opts \
	    -artifact_prefix=fuzz/crashes/$$t/ build-fuzz/corpus-$$t fuzz/corpus/$$t 2>&1 | \
	    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|ERROR|SUMMARY|check failed' || true; \
	  if ls fuzz/crashes/$$t/ | grep -qE '^(crash|leak|timeout|oom)-'; then \
	    echo "fuzz $$t: inputs that fail are in fuzz/crashes/$$t/"; exit 1; fi; \
	done

# Line and branch coverage of each fuzzed source by the corpus `make fuzz` grew (and the seeds):
# the targets rebuilt with clang's source coverage and the regression driver, no libFuzzer.
fuzz-coverage:
	@scripts/deps.sh $(FUZZ_DEPS)
	@mkdir -p build-fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  case $$t in http_parse) src="$(FUZZ_SRC_http_parse)";; http_chunked) src="$(FUZZ_SRC_http_chunked)";; \
	    load_resp) src="$(FUZZ_SRC_load_resp)";; *) echo "no such fuzz target: $$t"; exit 1;; esac; \
	  clang -std=gnu11 -O1 -D_GNU_SOURCE -fprofile-instr-generate -fcoverage-mapping -Iinclude -Ihttp \
	    -Iapps -Ifuzz -o build-fuzz/$$t.cov fuzz/$$t.c fuzz/regress.c $$src; \
	  mkdir -p build-fuzz/corpus-$$t; \
	  LLVM_PROFILE_FILE=build-fuzz/$$t.profraw build-fuzz/$$t.cov fuzz/corpus/$$t build-fuzz/corpus-$$t \
	    fuzz/crashes/$$t >/dev/null; \
	  llvm-profdata merge -o build-fuzz/$$t.profdata build-fuzz/$$t.profraw; \
	  echo "== $$t: $$src"; \
	  llvm-cov report build-fuzz/$$t.cov -instr-profile=build-fuzz/$$t.profdata $$src | tail -1; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
