# sdt-build: every target creates what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYV := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The client environment gets the same dask, distributed, numpy, pandas… as the image (parity).
CLIENT_LOCK := sdt_build/constraints/py$(PYV)/client.txt
SDT := $(BIN)/sdt-build
EXAMPLE ?= examples/local-csv
PYTEST_ARGS ?=

.PHONY: install test test-services demo check build smoke run docker-up base-image bench clean constraints

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CLIENT_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CLIENT_LOCK) -e '.[dev]'
	touch $@

docker-up:
	bash scripts/docker-up.sh

base-image: install docker-up
	$(SDT) base

test-services:
	bash scripts/test-services.sh

test: install base-image test-services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install base-image
	$(SDT) check $(EXAMPLE)
	$(SDT) build $(EXAMPLE) --sample-key '["TAEFC1044741"]'
	$(SDT) run $(EXAMPLE) --output .sdt-demo

check: install
	$(SDT) check $(EXAMPLE)

build: install base-image
	$(SDT) build $(EXAMPLE)

smoke: build
	$(SDT) smoke $(EXAMPLE)

run: install
	$(SDT) run $(EXAMPLE) --output .sdt-run

constraints: install
	$(BIN)/python -m sdt_build.maintainer.constraints

bench: install base-image
	$(BIN)/python -m benchmarks

clean:
	-[ -x $(SDT) ] && $(SDT) clean
	rm -rf .sdt-demo .sdt-run .pytest_cache build *.egg-info
