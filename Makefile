# MetaWeb: `make run` serves the app with an embedded worker; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH  := torch==2.13.0
LOCK   := requirements.lock
# Where this machine kind keeps the CPU torch wheel that the lock pins (make lock only).
WHEELS ?= /opt/wheels
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Unset DJANGO_SETTINGS_MODULE means production settings (DEBUG off, DJANGO_SECRET_KEY required);
# the local targets below opt into dev explicitly, unless the caller chose a module.
DEV    := DJANGO_SETTINGS_MODULE=$${DJANGO_SETTINGS_MODULE:-metaweb.settings.dev}

.PHONY: install lock run worker beat test test-fast lint vendor bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: any other spec pulls a multi-GB CUDA build. Then every other package
# at the version and hash of requirements.lock, then the project itself without resolving.
$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Re-resolve requirements.lock after changing pyproject.toml's dependencies (settings in [tool.uv]);
# tests/test_lockfile.py fails until the lock matches them again.
lock: $(BIN)/python
	test -x $(BIN)/uv || $(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --quiet --find-links $(WHEELS) --custom-compile-command "make lock" -o $(LOCK)

run: install
	$(DEV) $(BIN)/python manage.py migrate --noinput
	$(DEV) $(BIN)/python manage.py seed_demo
	$(DEV) $(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

worker: install
	$(DEV) $(BIN)/celery -A metaweb worker -Q gpu,cpu --concurrency 1 --loglevel INFO

beat: install
	$(DEV) $(BIN)/celery -A metaweb beat --loglevel INFO

# The web tests (all but the browser and the pure engine) run a second time on SQLite,
# the embedded default's database: every query must work on both.
WEB_TESTS := tests --ignore=tests/e2e --ignore=tests/workers/metalearn -m "not e2e"

test: install
	DJANGO_SETTINGS_MODULE=metaweb.settings.test $(BIN)/python manage.py wait_for_services --timeout 15
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@echo "== the web tests again, on SQLite (metaweb.settings.test_sqlite) =="
	$(BIN)/python -m pytest --ds metaweb.settings.test_sqlite $(WEB_TESTS)

test-fast: install
	$(BIN)/python -m pytest -m "not e2e and not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

vendor:
	bash static/vendor/update.sh

bench: install
	$(BIN)/python benchmarks/engine_throughput.py

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
