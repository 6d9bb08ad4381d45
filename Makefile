# tieredcache developer tasks.  `make help` lists them; docs/development.md explains them.
#
# Everything runs from a private virtualenv, .venv, and is driven by file timestamps so a
# re-run with nothing changed does no pip work and no compile:
#
#   .venv/.stamp-install  <- pyproject.toml setup.py     pip install --editable '.[test]'
#   src/tieredcache/_core*.so  <- csrc/*.[ch] setup.py    setup.py build_ext --inplace
#                                 + build flags (TIEREDCACHE_DEBUG)
#   build/asan/ext/...so  <- csrc/*.[ch] setup.py        the ASan+UBSan build, kept apart
#
# The sanitizer build never touches src/: `make asan-test` stages a copy of the package
# with the sanitized extension under build/asan/lib and puts that first on PYTHONPATH.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-print-directory

# ---- knobs (override on the command line: `make test PYTEST_ARGS='-k ttl -x'`) -------------
PYTHON      ?= python3
VENV        ?= .venv
PYTEST_ARGS ?=
BENCH_ARGS  ?=
PIP_QUIET   ?= --quiet
# Extra compiler flags for the sanitizer build only. Python's own CFLAGS carry -fwrapv,
# which makes signed overflow defined and so invisible to UBSan; -fno-wrapv (placed after
# it) turns that check back on.
ASAN_CFLAGS ?= -fno-wrapv
# 1 = also build the sanitizer run with TIEREDCACHE_DEBUG (assertions, structural checks).
ASAN_DEBUG  ?= 0
# The compiler whose sanitizer runtimes get preloaded: the one setuptools builds with.
ASAN_CC     ?= gcc

# ---- derived -----------------------------------------------------------------------------
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
STAMP       := $(VENV)/.stamp-install
BENCH_STAMP := $(VENV)/.stamp-bench
CSRC        := $(sort $(wildcard csrc/*.c csrc/*.h))
EXT_SUFFIX  := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))' 2>/dev/null)
$(if $(EXT_SUFFIX),,$(error cannot run '$(PYTHON)': install Python 3.11+ or pass PYTHON=/path/to/python3))
SO          := src/tieredcache/_core$(EXT_SUFFIX)
BUILD_FLAGS := build/.flags-inplace

BUILD_RECORD = TIEREDCACHE_DEBUG=$(TIEREDCACHE_DEBUG) sources: $(notdir $(CSRC))

ASAN_DIR    := build/asan
ASAN_SO     := $(ASAN_DIR)/ext/tieredcache/_core$(EXT_SUFFIX)
ASAN_FLAGS_FILE := build/.flags-asan
ASAN_RECORD  = TIEREDCACHE_DEBUG=$(ASAN_DEBUG) CFLAGS=$(ASAN_CFLAGS) sources: $(notdir $(CSRC))
# Recursive (=) so gcc is only asked when a sanitizer target runs.
ASAN_RT      = $(shell $(ASAN_CC) -print-file-name=libasan.so):$(shell $(ASAN_CC) -print-file-name=libubsan.so)
# CPython is not built with ASan, so its runtime must be loaded before anything else
# (LD_PRELOAD). CPython "leaks" by design at exit: leak detection off. PYTHONMALLOC=malloc
# sends every Python object to malloc, where ASan can see it, instead of pymalloc arenas.
# allocator_may_return_null: a failed malloc returns NULL (-> MemoryError) as it would
# without ASan, instead of aborting.
ASAN_OPTS   := detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:print_summary=1
UBSAN_OPTS  := print_stacktrace=1:halt_on_error=1
ASAN_ENV     = LD_PRELOAD=$(ASAN_RT) ASAN_OPTIONS=$(ASAN_OPTS) UBSAN_OPTIONS=$(UBSAN_OPTS) \
               PYTHONMALLOC=malloc PYTHONPATH=$(CURDIR)/$(ASAN_DIR)/lib
# For the test run, pytest must not capture fd 2 (--capture=sys): a report written into
# pytest's capture file is lost when the sanitizer ends the process. ASan also writes each
# report to a file, so an error in any process of the run (a forked child or a subprocess
# whose stderr a test swallowed) fails asan-test. (GCC 12's libubsan ignores log_path:
# UBSan reports reach stderr only, and halt_on_error makes them fatal.)
ASAN_REPORTS := $(ASAN_DIR)/reports
ASAN_TEST_ENV = LD_PRELOAD=$(ASAN_RT) \
               ASAN_OPTIONS=$(ASAN_OPTS):log_path=$(CURDIR)/$(ASAN_REPORTS)/asan \
               UBSAN_OPTIONS=$(UBSAN_OPTS) \
               PYTHONMALLOC=malloc PYTHONPATH=$(CURDIR)/$(ASAN_DIR)/lib

# Runs $(PYTEST_CMD) then $(PYTEST_CHECK) (which may set rc), both set per target.
# pytest's exit 5 means "no tests were collected": say so loudly, but do not fail over it.
define PYTEST_RUN
set +e; $(PYTEST_CMD); rc=$$?; set -e; \
$(PYTEST_CHECK) \
if [ $$rc -eq 5 ]; then \
  echo "*** pytest collected NO tests (exit 5): nothing was tested. Add tests under tests/." >&2; \
  exit 0; \
fi; \
exit $$rc
endef

# Loaded into the sanitizer run with -p: names the extension under test in the report
# header, and fails the run if the tests imported any other build of tieredcache._core
# (a conftest that put src/ on sys.path would silently test the unsanitized build).
define ASAN_PLUGIN
import sys

EXPECTED = "$(CURDIR)/$(ASAN_DIR)/lib/"


def pytest_report_header(config):
    import tieredcache._core as core
    return f"tieredcache._core (ASan+UBSan): {core.__file__}"


def pytest_sessionfinish(session, exitstatus):
    core = sys.modules.get("tieredcache._core")
    if core is not None and not core.__file__.startswith(EXPECTED):
        print(f"\nasan-test: the tests imported {core.__file__}, not the sanitized build")
        session.exitstatus = 1
endef

.PHONY: help venv build test demo asan-build asan-test hardening hardening-ci bench bench-redis bench-decorators bench-web bench-e2e deps clean distclean FORCE

help: ## list the targets
	@echo "tieredcache: make TARGET"
	@awk -F':.*## ' '/^[a-z0-9%-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo "knobs: PYTEST_ARGS='...'  BENCH_ARGS='...'  CAMPAIGNS='fuzz chaos'  TIEREDCACHE_DEBUG=1  ASAN_DEBUG=1  PYTHON=python3"

# ---- environment -------------------------------------------------------------------------
venv: $(STAMP) $(SO) ## create .venv and install the package (editable) with its test extra

$(STAMP): pyproject.toml setup.py | $(BUILD_FLAGS)
	@echo "==> setting up $(VENV) with $$($(PYTHON) -V 2>&1)"
	@if ! $(PY) -c '' 2>/dev/null; then \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	fi
	$(PIP) install $(PIP_QUIET) --upgrade pip
	@# The build backend's own requirements, read from pyproject.toml: the editable install
	@# below reuses this venv instead of building an isolated one on every run.
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' > $(VENV)/build-requirements.txt
	$(PIP) install $(PIP_QUIET) --upgrade -r $(VENV)/build-requirements.txt
	env -u TIEREDCACHE_SANITIZE $(PIP) install $(PIP_QUIET) --no-build-isolation --editable '.[test]'
	@touch $@

# The flags record is rewritten only when its text changes: switching TIEREDCACHE_DEBUG on
# or off, or adding or removing a file under csrc/, rebuilds the extension, while an
# unchanged setting does nothing.
$(BUILD_FLAGS): FORCE
	@mkdir -p $(@D)
	@echo '$(BUILD_RECORD)' | cmp -s - $@ || echo '$(BUILD_RECORD)' > $@

# The editable install above already compiled the extension: skip if nothing is newer.
$(SO): $(CSRC) setup.py $(BUILD_FLAGS) | $(STAMP)
	@if [ -e $@ ] && [ -z "$$(find $^ -newer $@ 2>/dev/null)" ]; then \
	  echo "==> $@ is up to date"; \
	else \
	  echo "==> building $@ (TIEREDCACHE_DEBUG=$(TIEREDCACHE_DEBUG))"; \
	  env -u TIEREDCACHE_SANITIZE $(PY) setup.py --quiet build_ext --inplace --force; \
	fi

build: $(BUILD_FLAGS) | $(STAMP) ## rebuild the extension in place (honours TIEREDCACHE_DEBUG=1)
	@echo "==> building $(SO) (TIEREDCACHE_DEBUG=$(TIEREDCACHE_DEBUG))"
	env -u TIEREDCACHE_SANITIZE $(PY) setup.py build_ext --inplace --force

deps: ## install the system packages the test suite needs (redis-server; chromium and chromium-driver for the dashboard test), if missing
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || missing="$$missing chromium chromium-driver"; \
	if [ -z "$$missing" ]; then \
	  echo "==> deps: $$(redis-server --version | cut -d' ' -f1-3); $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "==> deps: installing$$missing with apt-get"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	else \
	  echo "==> deps: missing:$$missing (the Redis tests and the dashboard browser test need them)." >&2; \
	  echo "    install them as root: apt-get update && apt-get install -y$$missing" >&2; \
	fi

# ---- everyday ----------------------------------------------------------------------------
test: PYTEST_CMD = $(PY) -m pytest $(PYTEST_ARGS)
test: deps $(STAMP) $(SO) ## set up, then run the test suite
	@echo "==> pytest $(PYTEST_ARGS)"
	@$(PYTEST_RUN)

# `make demo`, the README's first command: the restaurant billing app (docs/examples/restaurant)
# on nx-27017, cached against uncached on an evening of traffic; prints the before/after table
# and writes build/demo-latency.png. REDIS_URL=redis://... puts Redis behind L1;
# DEMO_ARGS='--serve' then keeps the app and its dashboard up on 127.0.0.1:8000.
DEMO_ARGS   ?=
DEMO_STAMP  := $(VENV)/.stamp-demo

demo: $(DEMO_STAMP) $(SO) ## set up, then run the restaurant demo: cached vs uncached, table and chart (DEMO_ARGS='--serve')
	$(PY) docs/examples/restaurant/demo.py $(DEMO_ARGS)

$(DEMO_STAMP): pyproject.toml | $(STAMP)
	@echo "==> installing the demo extra"
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["demo"]))' > $(VENV)/demo-requirements.txt
	$(PIP) install $(PIP_QUIET) -r $(VENV)/demo-requirements.txt
	@touch $@

bench: $(BENCH_STAMP) $(SO) ## set up the bench extra, then run benchmarks/bench_local.py
	$(PY) benchmarks/bench_local.py $(BENCH_ARGS)

bench-redis: deps $(BENCH_STAMP) $(SO) ## the Redis tier against redis-py, redis-benchmark and a bare client
	$(PY) benchmarks/bench_redis.py $(BENCH_ARGS)

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	@echo "==> installing the bench extra"
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))' > $(VENV)/bench-requirements.txt
	$(PIP) install $(PIP_QUIET) -r $(VENV)/bench-requirements.txt
	@touch $@

# ---- sanitizers --------------------------------------------------------------------------
$(ASAN_FLAGS_FILE): FORCE
	@mkdir -p $(@D)
	@echo '$(ASAN_RECORD)' | cmp -s - $@ || echo '$(ASAN_RECORD)' > $@

$(ASAN_SO): $(CSRC) setup.py $(ASAN_FLAGS_FILE) | $(STAMP)
	@echo "==> building the ASan+UBSan extension into $(ASAN_DIR)/ext (TIEREDCACHE_DEBUG=$(ASAN_DEBUG) CFLAGS=$(ASAN_CFLAGS))"
	rm -rf $(ASAN_DIR)/ext $(ASAN_DIR)/temp
	TIEREDCACHE_SANITIZE=1 TIEREDCACHE_DEBUG=$(ASAN_DEBUG) CFLAGS='$(ASAN_CFLAGS)' \
	  $(PY) setup.py --quiet build_ext --force --build-lib $(ASAN_DIR)/ext --build-temp $(ASAN_DIR)/temp

asan-build: export TC_ASAN_PLUGIN = $(ASAN_PLUGIN)
asan-build: $(ASAN_SO) ## build the sanitizer extension and stage it in build/asan/lib
	@# A fresh copy of the Python package with the sanitized extension in place of the
	@# normal one; src/ is left alone, so `make test` keeps using the normal build.
	@rm -rf $(ASAN_DIR)/lib && mkdir -p $(ASAN_DIR)/lib
	@cp -R src/tieredcache $(ASAN_DIR)/lib/
	@find $(ASAN_DIR)/lib -name __pycache__ -type d -prune -exec rm -rf {} +
	@find $(ASAN_DIR)/lib -name '_core*.so' -delete
	@cp $(ASAN_SO) $(ASAN_DIR)/lib/tieredcache/
	@printf '%s\n' "$$TC_ASAN_PLUGIN" > $(ASAN_DIR)/lib/_tc_asan_check.py
	@for lib in $(subst :, ,$(ASAN_RT)); do \
	  [ -e "$$lib" ] || { echo "$$lib not found: install gcc's sanitizer runtimes (Debian: libasan8 libubsan1)" >&2; exit 1; }; \
	done
	@# Guard against a run that only looks sanitized: the extension must be instrumented,
	@# and the preloaded runtime must really catch a heap overflow in this environment.
	@nm -D --undefined-only $(ASAN_SO) | grep __asan_report_ >/dev/null \
	  || { echo "$(ASAN_SO) is not instrumented by ASan" >&2; exit 1; }
	@$(ASAN_ENV) $(PY) -c 'import sys, tieredcache._core as m; \
	  sys.exit(0 if m.__file__.startswith("$(CURDIR)/$(ASAN_DIR)/lib/") else "imported " + m.__file__)'
	@if $(ASAN_ENV) $(PY) -c 'import ctypes; libc = ctypes.CDLL(None); \
	      libc.malloc.restype = ctypes.c_void_p; libc.malloc.argtypes = [ctypes.c_size_t]; \
	      ctypes.memset(libc.malloc(16), 0, 17)' 2>$(ASAN_DIR)/canary.log \
	   || ! grep -q 'heap-buffer-overflow' $(ASAN_DIR)/canary.log; then \
	  cat $(ASAN_DIR)/canary.log >&2; echo "ASan canary: a 1-byte heap overflow was NOT caught" >&2; exit 1; \
	fi
	@echo "==> ASan canary: a deliberate 1-byte heap overflow was caught; runtime: $(ASAN_RT)"

asan-test: PYTEST_CMD = $(ASAN_TEST_ENV) $(PY) -m pytest --capture=sys -p _tc_asan_check $(PYTEST_ARGS)
asan-test: PYTEST_CHECK = $(ASAN_REPORT_CHECK)
asan-test: deps asan-build ## build with ASan+UBSan (apart from the normal build) and run the tests
	@rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	@echo "==> pytest under ASan+UBSan $(PYTEST_ARGS)"
	@$(PYTEST_RUN)

# Shows every report file of the run; one with an error fails asan-test even if pytest
# passed (the process that hit it may have been a child whose exit status went unchecked).
define ASAN_REPORT_CHECK
for f in $(ASAN_REPORTS)/*; do \
  [ -e "$$f" ] || continue; \
  echo; echo "==> sanitizer report $$f:"; cat "$$f"; \
  if grep -qE 'ERROR: |runtime error:' "$$f"; then \
    rc=1; echo "*** asan-test FAILED: sanitizer error reported in $$f" >&2; \
  fi; \
done;
endef

# ---- hardening campaigns (docs/reliability.md) ---------------------------------------------
# Fuzzing, valgrind memcheck, reference leaks under a debug CPython, thread stress, chaos
# with Redis, security, and (full run only) the suite under ASan+UBSan. Each campaign is
# hardening/<name>.sh full|ci and installs what it needs (atheris, python3-dbg, clang...).
hardening: deps $(STAMP) $(SO) ## every hardening campaign at full length (~2 h); table in build/hardening/full/summary.txt
	bash hardening/run.sh full $(CAMPAIGNS)

hardening-ci: deps $(STAMP) $(SO) ## the hardening campaigns' short forms (~12 min), as CI runs them
	bash hardening/run.sh ci $(CAMPAIGNS)

hardening-%: deps $(STAMP) $(SO) ## one campaign in full: fuzz memcheck refleak threads chaos security
	bash hardening/run.sh full $*

# ---- housekeeping ------------------------------------------------------------------------
clean: ## remove build products (keeps .venv and its installs)
	rm -rf build dist src/*.egg-info .pytest_cache
	find src -name '_core*.so' -delete
	find . -name __pycache__ -type d -not -path './.venv*' -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv and .hypothesis
	rm -rf $(VENV) .hypothesis

# ---- decorator and web benchmarks ----------------------------------------------------------
bench-decorators: $(BENCH_STAMP) $(SO) ## decorator hit/miss cost against lru_cache, cachetools, theine, cachebox, cashews, aiocache
	$(PY) benchmarks/bench_decorators.py $(BENCH_ARGS)

bench-web: $(BENCH_STAMP) $(SO) ## FastAPI/Flask endpoints under load (wrk) against the uncached endpoint and peer caches
	@if command -v wrk >/dev/null 2>&1; then \
	  echo "==> bench-web: $$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "==> bench-web: installing wrk with apt-get"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk </dev/null; \
	else \
	  echo "==> bench-web: wrk not found: the benchmark falls back to a slower Python load generator." >&2; \
	  echo "    install it as root: apt-get update && apt-get install -y wrk" >&2; \
	fi
	$(PY) benchmarks/bench_web.py $(BENCH_ARGS)

bench-e2e: $(BENCH_STAMP) $(SO) ## the restaurant and barbershop apps under load (2 workers) against peer caches; installs wrk
	@missing=""; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -z "$$missing" ]; then \
	  echo "==> bench-e2e: $$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $$(redis-server --version | cut -d' ' -f1-3)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "==> bench-e2e: installing$$missing with apt-get"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	else \
	  echo "==> bench-e2e: missing:$$missing; install them as root: apt-get update && apt-get install -y$$missing" >&2; \
	  exit 1; \
	fi
	$(PY) benchmarks/bench_e2e.py $(BENCH_ARGS)
