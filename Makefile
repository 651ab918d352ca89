# mesh-sidecar: `make demo` runs the sidecar end to end, `make test` runs the tests
# (`make test-campaign` the long reliability cases it skips).
# Everything the tests need is installed by these targets; nothing is assumed on the machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Extra install steps (model servers, storage emulators) are added by mk/*.mk.
INSTALL_TARGETS := $(STAMP)

include $(sort $(wildcard mk/*.mk))

.PHONY: install test test-fast test-campaign demo lint bench clean

$(STAMP): pyproject.toml setup.py $(wildcard proto/mmesh/*.proto)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(INSTALL_TARGETS)

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

# The long reliability-campaign cases that `make test` skips (about a minute); CI runs them.
test-campaign: install
	$(VENV)/bin/pytest -q --campaign -m campaign

demo: install
	$(PY) -m mesh_sidecar.demo

lint: install
	$(VENV)/bin/ruff check mesh_sidecar tests bench
	$(VENV)/bin/ruff format --check mesh_sidecar tests bench
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/sidecar.py

clean:
	rm -rf $(VENV) .venv-* .work build *.egg-info mesh_sidecar/mmesh
