# Thin wrapper over CMake. The two commands of the README:
#   make demo   installs what is missing, builds, runs the demo (DEMO_ARGS=--quick: a short one)
#   make test   installs what is missing, checks the formatting, builds three times (plain,
#               ASan+UBSan, TSan), runs every test (TSan: unit and integration), fuzzes
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 60
DEMO_ARGS ?=

# make chaos: rounds of kill/freeze(/etcd restart) per registry (at most 13: one new port a round)
CHAOS_ROUNDS ?= 8

.PHONY: all deps deps-test build build-asan build-fuzz build-tsan build-valgrind test test-plain \
        test-asan test-tsan fuzz tsan valgrind chaos chaos-net demo bench install clean format \
        check-format

all: build

deps:
	@scripts/install-deps.sh

deps-test:
	@scripts/install-deps.sh --test

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build build -j $(JOBS)

build-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFTRPC_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)

# The fuzzers at -O1, as libFuzzer's documentation builds them: 1.1 to 1.5 times the executions a
# second of -O0 (docs/reliability.md, Fuzzers), and reports still exact to the line.
build-fuzz:
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" \
	  -DFTRPC_FUZZ=ON $(CMAKE_FLAGS)
	cmake --build build-fuzz -j $(JOBS) --target fuzzers

# TSan and valgrind run only the unit and integration tests: build just those and the CLI. TSan at
# -O1 (asserts kept): several times faster to run than -O0, and its reports keep good stacks.
build-tsan:
	CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" \
	  -DFTRPC_TSAN=ON $(CMAKE_FLAGS)
	cmake --build build-tsan -j $(JOBS) --target unit_integration_tests

build-valgrind:
	cmake -S . -B build-valgrind -DCMAKE_BUILD_TYPE=Debug -DFTRPC_VALGRIND=ON $(CMAKE_FLAGS)
	cmake --build build-valgrind -j $(JOBS) --target unit_integration_tests

test-plain: build
	cd build && ctest --output-on-failure -j 2

test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j 2

# TSAN_OPTIONS, suppressions and the check of the children's reports: scripts/run-tsan.sh
test-tsan: build-tsan
	scripts/run-tsan.sh build-tsan

fuzz: build-fuzz
	scripts/run-fuzz.sh build-fuzz $(FUZZ_SECONDS)

test: deps-test
	$(MAKE) check-format
	$(MAKE) test-plain
	$(MAKE) test-asan
	$(MAKE) test-tsan
	$(MAKE) fuzz
	@echo "make test: all suites passed"

tsan: deps-test
	$(MAKE) test-tsan

# Unit and integration tests, and the ftrpc children of the latter, under valgrind memcheck (slow:
# not part of make test). VALGRIND_CTEST_ARGS narrows it, e.g. -R integration.test_cli
VALGRIND_CTEST_ARGS ?=
valgrind: deps-test build-valgrind
	scripts/run-valgrind.sh build-valgrind $(VALGRIND_CTEST_ARGS)

# The long form of tests/chaos (minutes): more rounds at a higher load, then the table of figures.
chaos: deps-test build
	@cd build && mkdir -p scratch && \
	  CHAOS_LONG=1 CHAOS_ROUNDS=$(CHAOS_ROUNDS) FTRPC_CLI=$$PWD/ftrpc FTRPC_SCRATCH=$$PWD/scratch \
	  tests/test_chaos > chaos.log 2>&1; rc=$$?; cat chaos.log; echo; \
	  echo "| scenario                 |   calls |      ok | errors | duplicates | max attempts | p99 ms |"; \
	  echo "|--------------------------|---------|---------|--------|------------|--------------|--------|"; \
	  grep '^CHAOS|' chaos.log | sed 's/^CHAOS|/|/'; exit $$rc

# The long form of tests/netfault (faults between hosts: black holes, a stalled proxy, an etcd
# cluster losing its leader, a member and its clients; about 2 minutes; root and nftables, as CI),
# then its table.
chaos-net: deps-test build
	@cd build && mkdir -p scratch && \
	  NETFAULT_LONG=1 FTRPC_CLI=$$PWD/ftrpc FTRPC_SCRATCH=$$PWD/scratch \
	  tests/test_netfault > chaos-net.log 2>&1; rc=$$?; cat chaos-net.log; echo; \
	  echo "| scenario                           |   calls |      ok | errors | max attempts | detected ms | avoided ms | p99 ms |"; \
	  echo "|------------------------------------|---------|---------|--------|--------------|-------------|------------|--------|"; \
	  grep '^NETFAULT|' chaos-net.log | sed 's/^NETFAULT|/|/'; exit $$rc

demo: deps build
	scripts/demo.sh build $(DEMO_ARGS)

bench: deps build
	scripts/bench.sh build

install: build
	cmake --install build

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# clang-format 14 (Debian 12's); `make format` rewrites the files
check-format:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h') && echo "check-format: clean"

clean:
	rm -rf build build-asan build-fuzz build-tsan build-valgrind
