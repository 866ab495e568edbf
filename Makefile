# The course's two commands (see README.md):
#   make course   install what is missing into .venv, then open the course in JupyterLab
#   make test     install what is missing into .venv, then run the library tests and every notebook
# Variables: PYTHON (3.10-3.12, default python3), VENV (default .venv),
#            TORCH (pip requirement for PyTorch; default: a CUDA build where `nvidia-smi` finds a GPU,
#            else the CPU build from PyTorch's CPU index).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.metalearn_edu-installed
PYTEST_ARGS ?=
# Offline Omniglot: a folder holding the two official archives (see README); defaults to
# ../shared/data/omniglot beside the repository when that folder has them.
METALEARN_EDU_OMNIGLOT ?= $(if $(wildcard ../shared/data/omniglot/images_background.zip),$(abspath ../shared/data/omniglot))
export METALEARN_EDU_OMNIGLOT

.PHONY: course test install lint format students notebooks clean

# JupyterLab refuses to run as root unless told to (containers, cloud machines)
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

course: $(STAMP)
	cd notebooks && ../$(BIN)/jupyter lab $(LAB_FLAGS) 00_welcome.ipynb

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else "metalearn_edu needs Python 3.10 to 3.12, but $(PYTHON) is %d.%d: run make PYTHON=python3.11 (or another)" % v)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c 'import torch' 2>/dev/null; then \
	  echo "PyTorch is installed: $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	elif [ -n "$(TORCH)" ]; then \
	  $(BIN)/python -m pip install "$(TORCH)"; \
	elif nvidia-smi -L >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: installing PyTorch with CUDA"; \
	  $(BIN)/python -m pip install "torch>=2.4"; \
	else \
	  echo "No NVIDIA GPU found: installing the CPU build of PyTorch"; \
	  $(BIN)/python -m pip install "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu --retries 1 --timeout 30; \
	fi
	$(BIN)/python -m pip install -e ".[course,test]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check metalearn_edu tests
	$(BIN)/ruff format --check metalearn_edu tests

format: $(STAMP)
	$(BIN)/ruff format metalearn_edu tests
	$(BIN)/ruff check --fix metalearn_edu tests

# rebuild notebooks/student/ from the solution notebooks
students: $(STAMP)
	$(BIN)/python -m metalearn_edu build-students

# re-run every solution notebook at full size, store its outputs, rebuild the student versions
notebooks: $(STAMP)
	METALEARN_EDU_FAST=0 $(BIN)/python -m metalearn_edu build-students --execute

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
