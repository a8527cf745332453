# dynamics_lab: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel: an unpinned torch would pull a multi-GB CUDA build. An existing torch in the
# venv (e.g. a CUDA build on a GPU machine) is kept.
TORCH_SPEC ?= torch==2.13.0
# What `make lock` resolves torch's own requirements against (torch itself is left out of the
# lock: TORCH_SPEC installs it, or the venv's own build is kept).
TORCH_LOCK ?= torch==2.13.0+cpu
EXPERIMENT ?= grokking
WORKERS ?= 2

.PHONY: help install lock run sweep test test-slow test-slurm bench results lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python  ## create .venv: CPU torch unless one is there, then requirements.lock and the package
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -r requirements.lock
	$(BIN)/pip install --no-deps -e .

lock: $(BIN)/python  ## re-resolve requirements.lock from pyproject.toml (uv); LOCK_FLAGS=--upgrade takes the newest
	$(BIN)/python -m uv --version >/dev/null 2>&1 || $(BIN)/pip install -q uv
	printf '%s\n' "$(TORCH_LOCK)" > $(VENV)/torch-lock.txt
	UV_FIND_LINKS="$${UV_FIND_LINKS:-$$PIP_FIND_LINKS}" $(BIN)/python -m uv pip compile pyproject.toml \
		--extra dev --python $(BIN)/python -c $(VENV)/torch-lock.txt --no-emit-package torch \
		--custom-compile-command "make lock" $(LOCK_FLAGS) -o requirements.lock

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
