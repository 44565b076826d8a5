# Set-up and the two jobs. `make figures` and `make test` each install what they need first.
#
#   TORCH   the torch requirement installed before everything else (default torch==2.13.0).
#           On a CPU-only machine that holds the CPU wheel of 2.13.0 locally (as this project's
#           own machines do) pip takes it; on a CUDA machine PyPI's torch==2.13.0 is the CUDA build.
#           Any other spec works too, e.g. `make test TORCH='torch>=2.6'`.
#   PYTHON  the interpreter that creates the virtual environment (Python >= 3.11).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: install figures test lint clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, on its own: the project's loose torch>=2.4 then installs nothing more.
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

figures: install
	$(BIN)/interp figures

lint: install
	$(BIN)/ruff check interp tests benchmarks

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
