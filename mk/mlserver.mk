# A real MLServer for the mlserver runtime's tests and benchmarks, in a venv of its own:
# MLServer pins its own grpcio, protobuf and web stack, and uvloop >= 0.22 hangs every
# load with parallel_workers=1. The repository module is installed too (no dependencies),
# the way a ServingRuntime image would ship it.
MLSERVER_VENV := .venv-mlserver
MLSERVER_STAMP := $(MLSERVER_VENV)/.installed
INSTALL_TARGETS += $(MLSERVER_STAMP)

$(MLSERVER_STAMP): mk/mlserver.mk | $(STAMP)
	test -x $(MLSERVER_VENV)/bin/python || $(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet --upgrade pip
	$(MLSERVER_VENV)/bin/pip install --quiet 'mlserver==1.7.1' 'mlserver-sklearn==1.7.1' \
		'mlserver-lightgbm==1.7.1' 'uvloop<0.22' 'protobuf<7'
	$(MLSERVER_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# Plots of the benchmarks (bench/mlserver_repository.py draws docs/mlserver_repository.png).
BENCH_STAMP := $(VENV)/.bench-installed
INSTALL_TARGETS += $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PIP) install --quiet -e '.[bench]'
	touch $@
