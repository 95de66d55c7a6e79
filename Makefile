# Parley's front door. `make run` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
# uv never downloads a Python of its own: the venv's is the one `make` was given.
export UV_PYTHON_DOWNLOADS := never

.PHONY: help install lock run test lint format protos protos-check migration clean bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install exactly uv.lock: every service, the kit and the dev tools

# Plain pip installs the locked uv once (hash-checked; `uv sync` keeps it at the locked version after);
# uv installs the lock (hash-checked) and nothing else.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-bootstrap.txt

$(STAMP): uv.lock requirements-bootstrap.txt pyproject.toml $(wildcard */pyproject.toml) | $(UV)
	$(UV) sync --locked --quiet || { echo 'uv.lock does not match the pyproject files: did you forget `make lock`?' >&2; exit 1; }
	touch $@

lock: | $(UV) ## re-resolve uv.lock from the pyproject files (after changing a dependency; see docs/operations.md)
	$(UV) lock $(LOCK_ARGS)
	$(UV) export --frozen --quiet --only-group bootstrap --no-emit-workspace -o requirements-bootstrap.txt

run: install ## start the whole platform on http://127.0.0.1:8080 (embedded PostgreSQL + NATS unless URLs are set)
	$(PY) -m parley.kit.dev

# Each checkout's own temporary folder: pytest keeps only its three newest runs under a shared root, so a
# run in a second checkout would delete this one's embedded PostgreSQL mid-run. Short: PostgreSQL's socket lives there.
TEST_TMP := /tmp/parley-tests-$(shell printf %s "$(CURDIR)" | cksum | cut -d' ' -f1)

test: install lint ## lint, then every test: stubs vs .proto, units against real PostgreSQL + NATS, end to end
	$(PY) -m pytest --basetemp=$(TEST_TMP)

lint: install ## ruff, then mypy over the kit and every service (fastest check first)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

protos: install ## regenerate protos/src/parley/v1 (messages, .pyi, gRPC stubs and their typed .pyi) from protos/parley/v1/*.proto
	$(PY) protos/generate.py

protos-check: install ## fail when the committed stubs drift from the .proto files
	$(PY) protos/generate.py --check

migration: install ## write a service's next Alembic revision from its models: make migration SERVICE=chat MESSAGE="pin conversations"
	@test -n "$(SERVICE)" -a -n "$(MESSAGE)" || { echo 'usage: make migration SERVICE=<gateway|ingestion|retrieval|chat|usage> MESSAGE="what it does"'; exit 2; }
	$(PY) -m parley.kit.migrations $(SERVICE) revision -m "$(MESSAGE)"

bench: install ## print the benchmarks' figures (see BENCHMARKS.md)
	$(PY) bench/run.py

clean: ## remove the virtualenv and caches (keeps .parley/, your data)
	rm -rf $(VENV) .pytest_cache .ruff_cache
