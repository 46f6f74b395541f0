# The README's two commands: `make run` and `make test`. Both set up .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned to the CPU wheel, so pip never resolves a multi-GB CUDA build here.
TORCH_PIN ?= torch==2.13.0
# No PIXELMILL_HOME here: `make run` stores runs where the `pixelmill` command looks for them
# (PIXELMILL_HOME, default ~/.local/share/pixelmill), so `pixelmill runs` lists them afterwards.
# transformers/diffusers warn on import about extras we leave out on purpose (torchvision, accelerate)
export TRANSFORMERS_VERBOSITY ?= error
export DIFFUSERS_VERBOSITY ?= error

.PHONY: setup run test lint bench gpu-check bench-webhook schemathesis clean schema exiftool chromium postgresql redis cluster n8n-node n8n-node-test e2e-n8n

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)
	@echo "pixelmill is installed in $(VENV): run $(BIN)/pixelmill --help, or 'source $(BIN)/activate' to put pixelmill on PATH"

# Serve workflows/, call the demo workflow's webhook once, print the result, keep serving (Ctrl-C stops).
# PIXELMILL_DEMO_WORKFLOW picks another workflow; PIXELMILL_PORT another port.
run: setup
	$(BIN)/python -m pixelmill.demo

test: setup exiftool chromium postgresql redis n8n-node-test
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The n8n community node package (integrations/n8n): npm ci (from the npm cache when warm) + tsc build.
N8N_PKG := integrations/n8n
n8n-node:
	cd $(N8N_PKG) && npm ci --prefer-offline --no-audit --no-fund && npm run build

# Its build and unit tests (node --test) are part of `make test`: about 45 s with a warm npm cache. Skipped
# with a warning where npm is missing.
n8n-node-test:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory n8n-node && cd $(N8N_PKG) && npm test; \
	else echo "warning: npm missing; the n8n node package's build and tests are skipped"; fi

# End to end in a real n8n 2.41.1 (installed from npm into ~/.cache/pixelmill-e2e-n8n, about 3 GB): loads the
# built node, imports and activates the templates, drives them over HTTP. Not part of `make test`.
e2e-n8n: setup n8n-node
	$(N8N_PKG)/e2e/install-n8n.sh
	$(BIN)/python $(N8N_PKG)/e2e/run_e2e.py

# exiftool is the independent reader the label tests check XMP with (Debian: libimage-exiftool-perl).
# Installed when apt-get is there and we may use it; the tests skip only that assertion when it is missing.
exiftool:
	@command -v exiftool >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libimage-exiftool-perl >/dev/null) \
	      || echo "warning: could not install exiftool; its test assertions will be skipped"; \
	  else echo "warning: exiftool missing and apt-get unavailable; its test assertions will be skipped"; fi; }

# Headless Chromium (Debian `chromium`) for the dashboard's browser tests, driven by Playwright for Python
# through its executable path (Playwright's own browser download is never used). Installed when apt-get is
# there and we may use it; otherwise only the browser tests are skipped, with a line saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; the dashboard's browser tests will be skipped"; \
	  else echo "warning: chromium missing and apt-get unavailable; the dashboard's browser tests will be skipped"; fi; }

# PostgreSQL (Debian `postgresql`: initdb and pg_ctl under /usr/lib/postgresql/*/bin) for the run-store tests on
# PostgreSQL, and `redis-server` for the Celery tests; each test starts its own throwaway server on a free
# loopback port. Installed when apt-get is there and we may use it; otherwise those tests are skipped, saying why.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	      || echo "warning: could not install postgresql; the PostgreSQL store tests will be skipped"; \
	  else echo "warning: postgresql missing and apt-get unavailable; the PostgreSQL store tests will be skipped"; fi; }

redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	      || echo "warning: could not install redis-server; the Celery tests will be skipped"; \
	  else echo "warning: redis-server missing and apt-get unavailable; the Celery tests will be skipped"; fi; }

# A local cluster on loopback: redis-server, PostgreSQL, one API in celery mode and two workers; runs the main
# job through them and prints where to look (docs/cluster.md). Ctrl-C stops it.
cluster: setup postgresql redis
	$(BIN)/python scripts/cluster.py

lint: setup
	$(BIN)/ruff check .

# Benchmarks print figures measured in one run; none of them is a test.
bench: setup
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/embedded_quality.py
	$(BIN)/python bench/moderation.py
	$(BIN)/python bench/watermark.py
	$(BIN)/python bench/posting.py
	$(BIN)/python bench/webhook.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/text_video.py

# On a machine with CUDA: the model nodes' CUDA paths and the full-size SD 1.5 / SDXL bench. setup keeps a
# torch that imports, so put a CUDA build in .venv first (python3 -m venv .venv && .venv/bin/pip install
# torch --index-url https://download.pytorch.org/whl/cu128).
gpu-check: setup
	$(BIN)/pip install -q -e '.[gpu]'
	$(BIN)/python -m pytest -q -p no:cacheprovider -rA tests/test_model_gpu.py
	$(BIN)/python bench/gpu.py

bench-webhook: setup
	nice -n 10 $(BIN)/python bench/webhook.py

# The fuzz test alone (it also runs in `make test`).
schemathesis: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_server_schemathesis.py

schema: setup
	$(BIN)/pixelmill schema -o workflows/pixelmill.schema.json

# Removes the virtual environment (and a ./.pixelmill left by older versions); the run store is kept.
clean:
	rm -rf $(VENV) .pixelmill
