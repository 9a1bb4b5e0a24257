# The README's first two commands: `make run` and `make test`.
# The venv's interpreter: the distribution's CPython when it is 3.11 or newer (Debian, Ubuntu and
# Fedora build it with PGO and LTO, libpython linked into the executable: the edge's request path
# runs ~10% faster than on a default pyenv build; bench/README.md), else the first python3 on PATH.
# It must be able to make venvs (Debian: python3-venv, which `make deps` installs).
# `make PYTHON=...` picks another. (An existing .venv keeps the interpreter it was made with.)
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	>/dev/null 2>&1 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ./data
ZONE ?= example.com
API ?= 127.0.0.1:8080
EDGE_PORT ?= 8443
ORIGIN_PORT ?= 8081

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
	@$(BIN)/mtlsgate demo --data-dir $(DATA) --origin-port $(ORIGIN_PORT) --edge-port $(EDGE_PORT) > $(DATA)/demo.json
	@echo "admin token and ids:  $(DATA)/bootstrap.json"
	@echo "API:                  http://$(API)/client/v4  (health: http://$(API)/healthz)"
	@echo "edge:                 https://127.0.0.1:$(EDGE_PORT)  (demo hostname demo.$(ZONE))"
	@echo "try, once the edge is up (200 with the demo client certificate, 403 without):"
	@$(PYTHON) -c 'import json,sys; d=json.load(open(sys.argv[1])); print("  " + d["with_certificate"]); print("  " + d["without_certificate"])' $(DATA)/demo.json
	@$(BIN)/mtlsgate echo-origin --listen 127.0.0.1:$(ORIGIN_PORT) & origin=$$!; \
		trap 'kill $$origin 2>/dev/null' EXIT INT TERM; \
		$(BIN)/mtlsgate serve --data-dir $(DATA) --api $(API) --edge 127.0.0.1:$(EDGE_PORT)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
