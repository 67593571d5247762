# Two commands on a fresh machine:  `make run` (the main job: `gcn-rag up`) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# the tests also run the optional Ray engine (tests/test_distributed.py, test_ray_serving.py)
$(BIN)/.installed-ray: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $@

install: $(BIN)/.installed
	scripts/install-browser.sh  # Debian's chromium + chromedriver for the console's browser tests

run: install  ## ingest, index, register, serve; prints URL, token and curl (Ctrl-C stops)
	$(BIN)/gcn-rag up $(ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint $(BIN)/.installed-ray  ## lint, type-check and run every test (with the ray extra)
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
