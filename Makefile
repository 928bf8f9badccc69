# The README's commands. `make serve` installs and serves; `make test` installs and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install install-dev serve demo test bench soak lint clean

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

test: install-dev
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache

# Every figure of issue 6 in one run: a table on stdout, JSON in bench/results/ (BENCHMARKS.md).
bench: install-dev
	$(BIN)/python -m bench
