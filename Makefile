# The README's quick start: `make demo` and `make test` work on a fresh clone with Python 3.9+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-output

.PHONY: demo test bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## Profile the example program with no AWS account; the last line printed is the flame graph's path.
## A profile every 2 s (instead of every 5 minutes) so the run writes several, merged in the graph.
demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	AWS_CODEGURU_PROFILER_REPORTING_INTERVAL_MS=2000 \
	  $(BIN)/python -m codeguru_agent --local $(DEMO_DIR) examples/order_pipeline.py

## The checks that keep the code's shape (style, formatting, types, the layers' import directions),
## then the whole test suite.
test: $(VENV)/.installed
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

## Benchmarks side by side with the official agent (installs both into their own environment).
bench:
	$(MAKE) -C benchmarks bench PYTHON=$(PYTHON)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
