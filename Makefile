# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench costs proto clean

$(STAMP): pyproject.toml setup.py smpc/_ringkernels.c
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel on disk; an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# CrypTen is a benchmark-only dependency; its metadata asks for the broken `sklearn`
	# package and for torchvision, hence --no-deps plus what it really imports
	$(PY) -m pip install -q --no-deps crypten==0.4.1
	$(PY) -m pip install -q onnx omegaconf pyyaml
	touch $(STAMP)

# three party services as subprocesses on loopback, fresh certificates, jobs through the job service
demo: $(STAMP)
	$(PY) examples/consortium_demo.py
	$(PY) examples/multi_lending.py
	$(PY) examples/blacklist_hits.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# pytest exits 5 when no test ran; make fails on any non-zero exit, so that cannot pass silently
test: lint
	$(PY) -m pytest -q

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
	rm -rf $(VENV) build *.egg-info smpc/*.so
