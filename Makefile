# The README's commands. `make serve` installs and serves; `make test` installs and runs the tests.
# Every install is `pip install -e .` (the `gradio-chat-gateway` command, in .venv/bin) plus pinned
# requirements; pip shows its progress.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install install-dev install-demo venvs serve demo test bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --progress-bar on -r requirements.txt -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --progress-bar on -r requirements-dev.txt -e .

# The demo needs gradio, not the test tools.
install-demo: $(BIN)/python
	$(BIN)/pip install --progress-bar on -r requirements.txt -e '.[demo]'

# Binds 0.0.0.0 as an open gateway unless LISTEN / GATEWAY_API_KEYS say otherwise (the banner warns).
serve: install
	$(BIN)/gradio-chat-gateway serve

demo: install-demo
	$(BIN)/gradio-chat-gateway demo $(if $(PORT),--port $(PORT)) $(if $(APP_PORT),--app-port $(APP_PORT))

# One venv per Gradio generation for tests/test_generations.py, cached outside the clone
# (tests/generations/venvs.py; GCG_VENV_CACHE moves the cache): instant when warm.
venvs: install-dev
	$(BIN)/python -m tests.generations.venvs --all

# PYTEST_ARGS selects, e.g. PYTEST_ARGS="-m 'not generations'".
test: install-dev venvs
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache gradio_chat_gateway.egg-info build

# Every figure of issue 6 in one run: a table on stdout, JSON in bench/results/ (BENCHMARKS.md).
bench: install-dev
	$(BIN)/python -m bench

# The full-size load and soak of issue 7: 2,000 concurrent streams through one gunicorn worker,
# disconnect storms, and the leak checks (the normal suite runs the same tests with 200).
soak: install-dev
	SOAK_STREAMS=2000 SOAK_ROUNDS=3 $(BIN)/python -m pytest -q -s -o timeout=900 tests/test_load.py
