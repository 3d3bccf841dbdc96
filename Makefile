# Two commands for a fresh machine: `make run` and `make test`. Everything else is a helper.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test install compile lint bench clean

run: install
	$(BIN)/ep quickstart

test: install
	$(BIN)/pytest $(PYTEST_ARGS)
	# The whole suite (no PYTEST_ARGS): the request path once more as plain Python, what an
	# install without the compiled build (no C compiler, a wheel) runs.
	$(if $(PYTEST_ARGS),,OBSERVABILITY_PURE_PYTHON=1 $(BIN)/pytest $(PURE_TESTS))

lint: install
	$(BIN)/ruff check src tests benchmarks examples tools
	$(BIN)/ruff format --check src tests benchmarks examples tools
	$(BIN)/mypy

install: $(VENV)/.installed compile

# The request path compiled with mypyc (src/observability/compiled.py); rebuilt when one of its
# sources changes. A stale build is never loaded, so a skipped rebuild only costs speed.
COMPILED_SOURCES := $(shell $(PYTHON) src/observability/compiled.py --sources)
COMPILED := src/observability/_compiled/manifest.json
PURE_TESTS := tests/observability/test_asgi.py tests/observability/logging tests/observability/metrics \
  tests/observability/prometheus tests/observability/test_masking.py tests/observability/test_compiled.py

compile: $(COMPILED)

# Without a C compiler (or setuptools) the toolkit runs as Python: a warning, not a failure
# (CI fails instead, in tests/observability/test_compiled.py).
$(COMPILED): $(VENV)/.installed src/observability/compiled.py $(COMPILED_SOURCES)
	$(BIN)/python -c "from observability.compiled import build; print(build())" \
	  || echo "WARNING: the request path was not compiled; it runs as Python (see above)" >&2

$(VENV)/.installed: pyproject.toml tools/checkov-requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# checkov (a test runs it on the CloudFormation stack) pins boto3/packaging versions that
	# clash with ours, so it gets a venv of its own.
	test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet -r tools/checkov-requirements.txt
	touch $@

clean:
	rm -rf $(VENV) src/observability/_compiled var .pytest_cache .mypy_cache .ruff_cache
