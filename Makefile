# Herald: the two commands a newcomer needs are `make run` and `make test`.
# Each installs its dependencies (scripts/deps.sh, idempotent) and builds.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
ARGS       ?=

.PHONY: all deps deps-test build build-asan run test test-unit test-asan clean
.PHONY: deps-bench bench bench-report

all: build

deps:
	scripts/deps.sh build

deps-test:
	scripts/deps.sh test

# Configured every time (a second): what scripts/deps.sh installed since
# the last configure (Criterion for the tests) is found.
build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHERALD_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

run: build
	$(BUILD)/bin/herald $(ARGS)

# The whole suite, in the normal build and then in the sanitizer build.
test: deps-test build build-asan
	cd $(BUILD) && ctest --output-on-failure -j 2
	cd $(ASAN_BUILD) && ctest --output-on-failure -j 2

test-unit: deps-test build
	cd $(BUILD) && ctest --output-on-failure -L unit

# The standard benchmark suite against fresh herald processes (bench/run.sh,
# about 2 minutes; BENCH_QUICK=1: about 30 s into bench/results/quick;
# BENCH_STEPS="fanout-1k request": some steps), then its HTML report.
# Results: bench/results/*.json and bench/results/report.html (bench/results/
# is ignored by git; bench/RESULTS.md keeps the tables and their commands).
deps-bench:
	scripts/deps.sh bench

bench: deps-bench build
	BUILD=$(BUILD) bench/run.sh

# Only renders bench/results/report.html (BENCH_RESULTS=dir for another).
bench-report: deps-bench
	/usr/bin/python3 bench/report.py --results $(or $(BENCH_RESULTS),bench/results)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
