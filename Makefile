# tick_assets — every target sets up its own virtual environment (uv, from uv.lock) first.
# Quick start: `make demo` then `make test`. See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv

# demo/dev only; tests always use temporary homes.
TICK_ASSETS_HOME ?= $(CURDIR)/data
DAGSTER_HOME ?= $(TICK_ASSETS_HOME)/dagster_home
RUN_ENV := TICK_ASSETS_HOME=$(TICK_ASSETS_HOME) DAGSTER_HOME=$(DAGSTER_HOME)
# demo: one process for the asset and its checks, INFO-level run log
DEMO_RUN_CONFIG := {"execution":{"config":{"in_process":{}}},"loggers":{"console":{"config":{"log_level":"INFO"}}}}
# demo capture: every shard in one run, stopping just after the simulated 15:30 close (the
# simulator plays 09:15-15:30 at [sim].speed, then runs at real time)
DEMO_CAPTURE_CONFIG := {"execution":{"config":{"in_process":{}}},"loggers":{"console":{"config":{"log_level":"INFO"}}},"ops":{"kite__ticks":{"config":{"stop_at":"15:30:05"}}}}

VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tick_assets-synced
# uv from PATH, else a private copy bootstrapped into .tools/ with the system python3.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/uv/bin/uv)

.PHONY: help setup demo test lint format bench dev clean clean-data

help:
	@echo "make demo   a simulated trading day: tokens, instruments, lookup, capture, archive, bars"
	@echo "make test   ruff + dagster definitions validate + pytest"
	@echo "make bench  run every benchmarks/bench_*.py"
	@echo "make dev    Dagster UI (webserver + daemon) on the embedded instance"
	@echo "make lint   ruff check + ruff format --check"
	@echo "make clean  remove .venv, .tools and caches (make clean-data removes TICK_ASSETS_HOME)"

$(CURDIR)/.tools/uv/bin/uv:
	@echo ">> uv not found; installing it into .tools/uv"
	@if python3 -m venv $(CURDIR)/.tools/uv; then \
	  $(CURDIR)/.tools/uv/bin/python -m pip install --quiet --disable-pip-version-check uv; \
	else \
	  echo ">> python3 -m venv unavailable (Debian: apt-get install python3-venv); trying pip --user"; \
	  python3 -m pip install --user --quiet uv; \
	  mkdir -p $(CURDIR)/.tools/uv/bin; \
	  ln -sf "$$(python3 -m site --user-base)/bin/uv" $@; \
	fi
	@$@ --version

# Re-sync only when the lock or the project metadata changed (fast no-op otherwise).
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: $(STAMP)

# Instance config for demo/dev: link the embedded default unless the user put their own there.
$(DAGSTER_HOME)/dagster.yaml: | $(STAMP)
	@mkdir -p $(DAGSTER_HOME)
	@if [ ! -e $@ ]; then ln -s $(CURDIR)/dagster.yaml $@; fi

# demo: a whole simulated trading day through Dagster. The Kite morning: log every app in
# (kite/access_token, one partition per app; Selenium + headless Chromium where installed, else
# the HTTP login), the day's instrument dump and the lookup; then the session: kite/ticks
# captures every shard in full mode (time-accelerated); after the close kite/ticks_archive
# writes the checked lake partition and kite/bars_1m the minute bars; a summary at the end.
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	@day=$$($(RUN_ENV) $(BIN)/tick-assets calendar latest-day); \
	apps=$$($(RUN_ENV) $(BIN)/python -c 'from tick_assets.config import load_settings; print(*load_settings().kite_apps)'); \
	echo ">> mode: $${TICK_ASSETS_MODE:-sim}, TICK_ASSETS_HOME: $(TICK_ASSETS_HOME), day: $$day"; \
	for app in $$apps; do \
	  echo ">> kite/access_token[$$app]"; \
	  $(RUN_ENV) $(BIN)/dagster asset materialize -m tick_assets.definitions \
	    --select kite/access_token --partition $$app --config-json '$(DEMO_RUN_CONFIG)'; \
	done; \
	echo ">> kite/instruments and kite/instrument_lookup for $$day"; \
	$(RUN_ENV) $(BIN)/dagster asset materialize -m tick_assets.definitions \
	  --select kite/instruments,kite/instrument_lookup --partition $$day \
	  --config-json '$(DEMO_RUN_CONFIG)'; \
	echo ">> kite/ticks for $$day: the session, every shard, full mode"; \
	$(RUN_ENV) $(BIN)/dagster asset materialize -m tick_assets.definitions \
	  --select kite/ticks --partition $$day --config-json '$(DEMO_CAPTURE_CONFIG)'; \
	echo ">> kite/ticks_archive and kite/bars_1m for $$day"; \
	$(RUN_ENV) $(BIN)/dagster asset materialize -m tick_assets.definitions \
	  --select kite/ticks_archive,kite/bars_1m --partition $$day \
	  --config-json '$(DEMO_RUN_CONFIG)'; \
	echo; $(RUN_ENV) $(BIN)/tick-assets lake show kite instrument_lookup date=$$day \
	  --count-by shard --verify; \
	echo; $(RUN_ENV) $(BIN)/tick-assets lake show kite ticks date=$$day --verify; \
	echo; $(RUN_ENV) $(BIN)/tick-assets lake show kite bars_1m date=$$day --verify

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/dagster definitions validate -m tick_assets.definitions
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(RUN_ENV) $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .hypothesis build dist
	find tick_assets tick_assets_tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} +

clean-data:
	@echo ">> removing $(TICK_ASSETS_HOME)"
	rm -rf $(TICK_ASSETS_HOME)
