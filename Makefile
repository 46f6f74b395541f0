# The README's two commands: `make run` and `make test`. Both set up .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned to the CPU wheel, so pip never resolves a multi-GB CUDA build here.
TORCH_PIN ?= torch==2.13.0
export PIXELMILL_HOME ?= $(CURDIR)/.pixelmill

.PHONY: setup run test lint bench clean schema

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/pixelmill run workflows/embedded-demo.yaml

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check pixelmill nodes tests bench server.py

bench: setup
	$(BIN)/python bench/engine.py

schema: setup
	$(BIN)/pixelmill schema -o workflows/pixelmill.schema.json

clean:
	rm -rf $(VENV) .pixelmill
