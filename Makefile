# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv first, from
# the committed lock (requirements/*.lock): a fresh machine gets exactly what CI tested.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCKS := requirements/torch-cpu.lock requirements/dev.lock requirements/crypten.lock
# the environment `make test-latest` builds from pyproject.toml's ranges, newest releases
LATEST := .venv-latest
# the lock is for the machines this project is developed, tested and benchmarked on
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28
# where pip and uv find torch's CPU build (a local version PyPI does not serve)
TORCH_FIND_LINKS ?= $(or $(wildcard /opt/wheels),https://download.pytorch.org/whl/torch/)

.PHONY: demo test test-latest lock lint bench costs proto clean

$(STAMP): $(LOCKS) pyproject.toml setup.py $(wildcard smpc/csrc/*.c smpc/csrc/*.h)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	# --require-hashes: every file is the one the lock names; --no-deps: nothing outside the lock
	# torch first, the CPU build: an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q --require-hashes --no-deps --find-links $(TORCH_FIND_LINKS) -r requirements/torch-cpu.lock
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/dev.lock
	# CrypTen, the benchmark baseline: its metadata asks for the broken `sklearn` package and
	# for torchvision, so it comes without them; what it really imports is in dev.lock
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/crypten.lock
	# smpc itself, built with the locked setuptools (the C kernels, or the torch fallback)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	# every dependency satisfied by the lock (CrypTen's two unwanted ones aside)
	$(PY) -m pip check | grep -v -e '^crypten ' -e '^No broken' | { ! grep . ; }
	touch $(STAMP)

# three party services as subprocesses on loopback, fresh certificates, jobs through the job service
demo: $(STAMP)
	$(PY) examples/consortium_demo.py
	$(PY) examples/multi_lending.py
	$(PY) examples/blacklist_hits.py
	$(PY) examples/fraud_rings.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# pytest exits 5 when no test ran; make fails on any non-zero exit, so that cannot pass silently
test: lint
	$(PY) -m pytest -q

# The next release of a dependency, found before a user finds it: a second venv from
# pyproject.toml's ranges with the newest releases the index offers (torch stays the CPU build
# of the lock: the newest torch on PyPI is a CUDA build of several GB), its versions printed,
# then the suite. `make lock` refreshes the lock to exactly what this run tested.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager --find-links $(TORCH_FIND_LINKS) \
		-e '.[dev,bench,ray]' "$$(grep -m1 '^torch==' requirements/torch-cpu.lock | cut -d' ' -f1)"
	$(LATEST)/bin/python -m pip install -q --no-deps crypten
	@echo "== newest releases under test (pyproject.toml ranges) =="
	$(LATEST)/bin/python -m pip freeze --exclude-editable | tee $(LATEST)/tested.txt
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider
	touch $(LATEST)/.passed

# Refresh requirements/dev.lock, crypten.lock and runtime.lock to the releases `make test-latest` just
# tested (run that first: the lock moves only after the suite passed on them).
lock: $(STAMP)
	@test -f $(LATEST)/.passed -a $(LATEST)/.passed -nt pyproject.toml || \
		{ echo "make lock: run 'make test-latest' first (it must pass on the releases the lock will pin)"; exit 1; }
	grep -v -e '^torch==' -e '^crypten==' -e '^smpc' $(LATEST)/tested.txt > $(LATEST)/constraints.txt
	UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile --quiet --generate-hashes $(LOCK_TARGET) \
		--find-links $(TORCH_FIND_LINKS) --constraint $(LATEST)/constraints.txt --no-emit-package torch \
		pyproject.toml requirements/build.in requirements/torch-cpu.in --extra dev --extra bench --extra ray \
		-o requirements/dev.lock
	UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile --quiet --generate-hashes $(LOCK_TARGET) --no-deps \
		requirements/crypten.in -o requirements/crypten.lock
	# the party image's lock (deploy/Dockerfile): the same releases, without the dev and bench extras
	grep -E '^[A-Za-z0-9_.-]+==' requirements/dev.lock | cut -d' ' -f1 > $(LATEST)/dev-pins.txt
	UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile --quiet --generate-hashes $(LOCK_TARGET) \
		--find-links $(TORCH_FIND_LINKS) --constraint $(LATEST)/dev-pins.txt --no-emit-package torch \
		pyproject.toml requirements/build.in requirements/torch-cpu.in -o requirements/runtime.lock
	@echo "requirements/*.lock refreshed; 'make test' rebuilds .venv from them"

bench: $(STAMP)
	mkdir -p benchmarks/results
	$(PY) -m pytest benchmarks -q --benchmark-only --benchmark-json=benchmarks/results/kernels.json
	$(PY) benchmarks/report.py benchmarks/results/kernels.json

# the protocol cost table is measured from code; tests/test_costs.py fails when it is stale
costs: $(STAMP)
	$(PY) -m smpc.costs --write docs/costs.md

# the gRPC code in smpc/v1 is generated from protos/ (grpcio-tools pinned in the dev extras);
# tests/test_service_proto.py regenerates it into a temporary folder and fails on any drift
proto: $(STAMP)
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info smpc/*.so
