# A real Triton Inference Server for tests and benchmarks: the CPU build shipped in the
# nvidia-pytriton wheel, in a venv of its own (its pins must not touch the sidecar's).
# The python backend needs the stub built for the venv's Python next to it.
TRITON_VENV := .venv-triton
TRITON_STAMP := .work/stamps/triton
PYTRITON_VERSION ?= 0.7.0
INSTALL_TARGETS += $(TRITON_STAMP)

$(TRITON_STAMP): mk/triton.mk
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install --quiet --upgrade pip
	$(TRITON_VENV)/bin/pip install --quiet 'nvidia-pytriton==$(PYTRITON_VERSION)'
	$(TRITON_VENV)/bin/python -c 'import pathlib, shutil, sys, pytriton; \
	    home = pathlib.Path(pytriton.__file__).parent / "tritonserver"; \
	    stub = home / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / "triton_python_backend_stub"; \
	    shutil.copy2(stub, home / "backends" / "python" / stub.name)'
	mkdir -p $(dir $@)
	touch $@
