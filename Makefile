# Herald: the two commands a newcomer needs are `make run` and `make test`.
# Each installs its dependencies (scripts/deps.sh, idempotent) and builds.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
ARGS       ?=
# make fuzz: seconds per harness, and extra libFuzzer options for each.
FUZZ_SECONDS ?= 60
FUZZ_ARGS    ?=

.PHONY: all deps deps-test build build-asan build-fuzz js run test test-unit test-asan clean
.PHONY: deps-bench bench bench-report fuzz

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

# The libFuzzer harnesses (tests/fuzz/README.md): clang, ASan and UBSan,
# only the codec and the parsers they reach. Clang is a test dependency.
build-fuzz: deps-test
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHERALD_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

# The JavaScript SDK and the demo site (clients/js/dist/www); Node >= 20
# and the npm packages come from scripts/js.sh (scripts/node.sh).
js:
	scripts/js.sh build

# Herald with the demo configuration: the embedded defaults (single node,
# no Redis or MongoDB) plus the demo site at / and its `demo` namespace
# (conf/demo.conf). RUN_CONFIG= (empty) runs the bare embedded defaults.
RUN_CONFIG ?= conf/demo.conf
run: build js
	$(BUILD)/bin/herald $(if $(RUN_CONFIG),-c $(RUN_CONFIG)) $(ARGS)

# The whole suite, in the normal build and then in the sanitizer build,
# then each fuzzing harness for a few seconds on its corpus (label fuzz).
test: deps-test build build-asan build-fuzz
	cd $(BUILD) && ctest --output-on-failure -j 2
	cd $(ASAN_BUILD) && ctest --output-on-failure -j 2
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j 2 -L fuzz

# Fuzzes each harness for FUZZ_SECONDS, one after the other, starting from
# its corpus in tests/fuzz/corpus/ and what earlier runs found (kept in
# $(FUZZ_BUILD)/corpus/, crash inputs in $(FUZZ_BUILD)/artifacts/; both
# ignored by git). Fails when any harness found something.
fuzz: build-fuzz
	@failed=; for h in $$(cat $(FUZZ_BUILD)/fuzz/harnesses.txt); do \
	  echo "fuzz: $$h for $(FUZZ_SECONDS) s"; \
	  tests/fuzz/run.sh $(FUZZ_BUILD)/fuzz/$$h tests/fuzz/corpus/$$h \
	    $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_ARGS) \
	    >$(FUZZ_BUILD)/fuzz-$$h.log 2>&1 || failed="$$failed $$h"; \
	  grep -h -E '^stat::(number_of_executed_units|average_exec_per_sec)' \
	    $(FUZZ_BUILD)/fuzz-$$h.log | sed 's/^/  /'; \
	done; \
	if [ -n "$$failed" ]; then \
	  echo "fuzz: found something in:$$failed (logs: $(FUZZ_BUILD)/fuzz-<harness>.log)"; \
	  exit 1; fi

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
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
