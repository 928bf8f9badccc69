# The README's commands. `make serve` installs and serves; `make test` installs and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install install-dev venvs redis-server serve demo test bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt

install-dev: $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt

serve: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

demo: install-dev
	$(BIN)/python demo.py

# One venv per Gradio generation for tests/test_generations.py, cached outside the clone
# (tests/generations/venvs.py; GCG_VENV_CACHE moves the cache): instant when warm.
venvs: install-dev
	$(BIN)/python -m tests.generations.venvs --all

# A real redis-server for the tests of REDIS_URL (tests/redis_server.py starts and stops it):
# Debian's package, installed when missing (CI runs as root).
redis-server:
	@command -v redis-server >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# PYTEST_ARGS selects, e.g. PYTEST_ARGS="-m 'not generations'".
test: install-dev venvs redis-server
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# Every figure of issue 6 in one run: a table on stdout, JSON in bench/results/ (BENCHMARKS.md).
bench: install-dev
	$(BIN)/python -m bench

# The full-size load and soak of issue 7: 2,000 concurrent streams through one gunicorn worker,
# disconnect storms, and the leak checks (the normal suite runs the same tests with 200).
soak: install-dev
	SOAK_STREAMS=2000 SOAK_ROUNDS=3 $(BIN)/python -m pytest -q -s -o timeout=900 tests/test_load.py
