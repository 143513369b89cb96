# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Everything installs into .venv; Debian's ffmpeg, Ghostscript, qpdf, bubblewrap and Chromium are installed when missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The CI service run (see .ci/run): real PostgreSQL, a Redis broker, S3 on a moto server.
SERVICE_ENV := HUB_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
               HUB_TEST_BROKER_URL=redis://127.0.0.1:6379/15 \
               HUB_TEST_STORAGE=s3

.PHONY: help install system-deps bench-deps demo test test-services pytest lint format messages clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP) system-deps  ## virtualenv + Python packages + ffmpeg/Ghostscript/qpdf/bubblewrap/Chromium

system-deps:  ## Debian's ffmpeg, Ghostscript, qpdf, bubblewrap (the decoder sandbox), Chromium (browser tests), espeak-ng (media benchmark) and nginx (download offload test and benchmark), when missing
	@missing=""; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v gs >/dev/null || missing="$$missing ghostscript"; \
	command -v qpdf >/dev/null || missing="$$missing qpdf"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

bench-deps: install  ## what the benchmarks measure against: the `bench` extra (tantivy, locust) and Debian's wrk, rsync, redis-server
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v rsync >/dev/null || missing="$$missing rsync"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

demo: install  ## migrate, seed a demo catalog, start a worker and serve on http://127.0.0.1:8000/
	$(BIN)/hub demo

test: install lint pytest  ## lint, type-check and run the whole suite on the embedded defaults

# One test process per core: most tests wait on a worker, a server or a browser rather
# than compute. Each process gets its own PostgreSQL database and Redis db (tests/conftest.py);
# whole files go to one process, so a file's module fixtures (a hub + worker) start once.
# --no-loadscope-reorder keeps tests/conftest.py's order, the longest files first (xdist's
# own puts the files with most tests first, which left the slowest one running alone at the end).
# `make test PYTEST_PROCESSES=0` runs in this process alone.
PYTEST_PROCESSES ?= auto
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_PROCESSES) --dist loadfile --no-loadscope-reorder

pytest: install
	$(PYTEST)

test-services: install  ## the suite again against PostgreSQL, Redis and S3 (moto server)
	$(SERVICE_ENV) $(PYTEST)

lint: install  ## ruff and mypy, as CI runs them
	$(BIN)/ruff check hub workers tests benchmarks
	$(BIN)/ruff format --check hub workers tests benchmarks
	$(BIN)/mypy

format: install  ## apply ruff's formatting and import order
	$(BIN)/ruff check --fix hub workers tests benchmarks
	$(BIN)/ruff format hub workers tests benchmarks

messages: install  ## re-extract the interface's strings into hub/translations; then translate the new ones in zh/
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext -k N_ --no-location --sort-output -w 120 \
	  --project "OER Hub" --copyright-holder "OER Hub" -o hub/translations/messages.pot .
	$(BIN)/pybabel update -i hub/translations/messages.pot -d hub/translations --no-fuzzy-matching -w 120

clean:  ## remove the virtualenv, caches and the embedded data directory
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info
