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

.PHONY: help install infra infra-down infra-status migrate run test lint seed bench browser clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the pinned requirements (once)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "install: pip install -r requirements-dev.txt into $(VENV)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

infra: install ## start PostgreSQL and Kafka (no-op when they are up)
	@bash scripts/infra.sh up

infra-down: ## stop the PostgreSQL and Kafka that `make infra` started
	@bash scripts/infra.sh down

infra-status: ## what runs where
	@bash scripts/infra.sh status || true

migrate: infra ## flask db upgrade on DATABASE_URL
	@$(BIN)/flask db upgrade

run: migrate ## the service on PORT (8080) under gunicorn, consumers included
	$(BIN)/gunicorn wsgi:app

browser: ## Debian's Chromium for the web page tests (installed once)
	@test -x $(CHROMIUM) || { echo "browser: installing Debian's chromium"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: migrate browser ## the whole suite against the real services
	$(BIN)/python -m pytest

lint: install ## ruff
	$(BIN)/ruff check .

seed: migrate ## produce fake orders to Kafka: make seed ARGS="--count 1000 --rate 200"
	$(BIN)/flask seed-orders $(ARGS)

bench: migrate ## benchmarks against the real services (not part of make test)
	$(BIN)/python -m bench

clean: ## remove the virtualenv (the services' data lives in ~/.cache/order-service)
	rm -rf $(VENV)
