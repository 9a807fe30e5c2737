# `make run` runs the service, `make test` checks everything. Both set themselves up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench services browser promtool compose-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet -e . --group dev
	touch $(STAMP)

services:
	.ci/services

# Debian's Chromium for the browser tests; Playwright's own browser download does not work here.
browser:
	@test -x /usr/bin/chromium || (command -v apt-get >/dev/null && (apt-get install -y -q chromium >/dev/null \
	  || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null))) \
	  || echo "warning: /usr/bin/chromium missing; browser tests will fail" >&2

# Debian's promtool (package prometheus): the metrics tests check /metrics, the alert rules and the scrape config.
promtool:
	@command -v promtool >/dev/null || (command -v apt-get >/dev/null && (apt-get install -y -q --no-install-recommends \
	  prometheus >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends \
	  prometheus >/dev/null))) || echo "warning: promtool missing (Debian package prometheus); metrics tests will fail" >&2

# Debian's docker-compose: tests/test_compose.py checks compose.yaml offline with `docker-compose config`.
compose-check:
	@command -v docker-compose >/dev/null || (command -v apt-get >/dev/null && (apt-get install -y -q docker-compose \
	  >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q docker-compose >/dev/null))) \
	  || echo "warning: docker-compose missing (Debian package docker-compose); the compose test will fail" >&2

run: $(STAMP) services
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/honcho start -f Procfile -p 8000

lint: $(STAMP)
	$(VENV)/bin/ruff check service actors tests
	$(VENV)/bin/ruff format --check service actors tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy service actors

# PYTEST_WORKERS=2 runs the suite in that many pytest-xdist processes, each with its own RabbitMQ vhost and Redis
# database (tests/support/isolation.py); a whole module stays on one process, so its module-scoped workers start once.
PYTEST_WORKERS ?= 3
XDIST := $(if $(PYTEST_WORKERS),-n $(PYTEST_WORKERS) --dist loadfile)

pytest: $(STAMP) services browser promtool compose-check
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest $(XDIST) --durations=30

test: lint typecheck pytest

bench: $(STAMP) services
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest tests/benchmarks -p no:cacheprovider -s -o addopts="" -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
