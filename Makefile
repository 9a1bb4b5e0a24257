# The README's first two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ./data
ZONE ?= example.com
API ?= 127.0.0.1:8080

.PHONY: install install-test deps check test run clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@test -x $(BIN)/mtlsgate

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

# Debian packages the tests need; idempotent, and loud when something cannot be installed.
deps:
	./scripts/deps.sh

check: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: deps check
	$(BIN)/pytest

run: install
	@if [ ! -f $(DATA)/bootstrap.json ]; then \
		$(BIN)/mtlsgate init --data-dir $(DATA) --zone $(ZONE) > /dev/null; \
	fi
	@echo "admin token and ids: $(DATA)/bootstrap.json"
	@echo "API: http://$(API)/client/v4  (health: http://$(API)/healthz)"
	$(BIN)/mtlsgate serve --data-dir $(DATA) --api $(API)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
