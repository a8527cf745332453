# dynamics_lab: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel: an unpinned torch would pull a multi-GB CUDA build. An existing torch in the
# venv (e.g. a CUDA build on a GPU machine) is kept.
TORCH_SPEC ?= torch==2.13.0
EXPERIMENT ?= grokking
WORKERS ?= 2

.PHONY: help install run sweep test test-slow test-slurm bench results lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python  ## create .venv and install the package with dev extras (CPU torch unless one is there)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -e ".[dev]"

run: install  ## the grokking demo: one quick run, prints its verdict
	$(BIN)/dynlab run $(EXPERIMENT)

sweep: install  ## the quick sweep of EXPERIMENT, then its report into results/
	$(BIN)/dynlab run $(EXPERIMENT) --sweep --workers $(WORKERS)
	$(BIN)/dynlab report $(EXPERIMENT)

test: install  ## the fast test suite
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

test-slow: install  ## the long reproductions (each shipped config shows its phenomenon)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m slow

test-slurm: install  ## the Slurm launcher against a real one-node Slurm (root; scripts/slurm-local.sh)
	scripts/slurm-local.sh start
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m slurm

bench: install  ## benchmark scripts: print ratios side by side
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

results: install  ## regenerate results/ for every experiment (quick profile)
	@for e in $$(ls experiments | sed 's/\.yaml$$//'); do \
		$(BIN)/dynlab run $$e --sweep --workers $(WORKERS) && $(BIN)/dynlab report $$e || exit 1; done

lint: install  ## ruff, with the rule set pinned in pyproject.toml
	$(BIN)/ruff check dynamics_lab tests benchmarks cli.py

clean:  ## remove the venv and local runs
	rm -rf $(VENV) runs wandb
