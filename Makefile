# order-service: `make run` starts the service, `make test` runs the whole suite. Both set up
# everything first (virtualenv, PostgreSQL, Kafka, migrations), and both are quick the second time.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp's name changes with the requirements, so an edit to them reinstalls and nothing else does.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
CHROMIUM ?= /usr/bin/chromium
# Without them the browser tests' screenshots show Chinese, Japanese and emoji as empty boxes.
FONTS := fonts-noto-cjk fonts-noto-color-emoji
# apt-get needs root; as another user, sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install infra infra-down infra-status migrate run test lint seed bench bench-scale tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the pinned requirements (once)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "install: pip install -r requirements-dev.txt into $(VENV)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

infra: install ## start PostgreSQL, Kafka, the edge (nginx) and the OpenID Connect provider (Keycloak)
	@$(BIN)/python -m devstack up

infra-down: install ## stop the PostgreSQL, Kafka, nginx and Keycloak that `make infra` started
	@$(BIN)/python -m devstack down

infra-status: install ## what runs where
	@$(BIN)/python -m devstack status || true

migrate: infra ## flask db upgrade as the owner (MIGRATION_DATABASE_URL), granting DATABASE_URL's role its rights
	@$(BIN)/flask db upgrade

run: migrate ## the service: nginx on PORT (8080), gunicorn (consumers included) on APP_BIND behind it
	@$(BIN)/python -m devstack.keycloak credentials
	$(BIN)/gunicorn wsgi:app

tools: ## Debian's chromium and fonts for CJK and emoji (web page tests), wrk (benchmarks); once
	@missing=""; test -x $(CHROMIUM) || missing="chromium"; command -v wrk >/dev/null || missing="$$missing wrk"; \
	if command -v dpkg >/dev/null; then for font in $(FONTS); do \
	  dpkg -s $$font >/dev/null 2>&1 || missing="$$missing $$font"; done; fi; \
	if [ -n "$$missing" ]; then \
	  echo "tools: installing$$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null \
	    || { echo "tools: could not install$$missing; install them (apt-get install$$missing) and retry"; exit 1; }; \
	fi

test: migrate tools ## the whole suite against the real services
	$(BIN)/python -m pytest

lint: install ## ruff, and the layering (import-linter contracts in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

seed: migrate ## produce fake orders to Kafka: make seed ARGS="--count 1000 --rate 200"
	$(BIN)/flask seed-orders $(ARGS)

bench: migrate tools ## benchmarks against the real services (not part of make test), then bench-scale
	$(BIN)/python -m bench
	$(BIN)/python -m bench.scale

bench-scale: infra tools ## the same service at BENCH_SCALE_ORDERS orders (2,000,000) against an empty database
	$(BIN)/python -m bench.scale

clean: ## remove the virtualenv (the services' data lives in ~/.cache/order-service)
	rm -rf $(VENV)
