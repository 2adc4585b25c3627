# Thin wrapper over CMake. `make` builds Release into build/, `make test` builds Debug with
# ASan+UBSan into build-asan/ and runs every test, `make run` serves, `make bench` measures,
# `make install PREFIX=/usr/local` installs the library, headers, ivy.pc, the CMake package and
# the ivy command (DESTDIR is honoured, for packaging).
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
TEST_DEPS ?= wrk nginx-light python3 libcurl4-openssl-dev libhiredis-dev libpq-dev redis-server \
             postgresql
BENCH_DEPS ?= wrk nginx-light python3-gevent python3-eventlet libboost-context-dev libhiredis-dev \
              redis-server

.PHONY: all release debug test run bench deps clean format install

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

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan
