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

.PHONY: install test test-services demo demo-hpc check build smoke run docker-up base-image bench clean constraints

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

# SDT on SLURM: a single-node cluster here (scripts/slurm.sh), the example's venv from its lock, its two
# sites as SLURM jobs (examples/clients/slurm shows the settings for a real cluster).
HPC_DIR ?= .sdt-demo-hpc
demo-hpc: install
	bash scripts/slurm.sh up
	rm -rf $(HPC_DIR)/project && mkdir -p $(HPC_DIR) && cp -r $(EXAMPLE) $(HPC_DIR)/project
	printf 'from sdt_build.clients import SlurmClient\n\n\nclass Here(SlurmClient):\n    venv = "%s"\n    interface = "lo"\n    workers = 2\n    memory_per_worker = "7GiB"\n    log_directory = "%s"\n' \
		"$(abspath $(HPC_DIR))/venv" "$(abspath $(HPC_DIR))/logs" > $(HPC_DIR)/project/client.py
	$(SDT) build $(HPC_DIR)/project --venv $(HPC_DIR)/venv
	eval "$$(bash scripts/slurm.sh env)" && $(SDT) run $(HPC_DIR)/project --dry-run && \
		$(SDT) run $(HPC_DIR)/project --output $(HPC_DIR)/results && sacct --completion
	bash scripts/slurm.sh down

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
	rm -rf .sdt-demo .sdt-demo-hpc .sdt-run .pytest_cache build *.egg-info
