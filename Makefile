# `make demo` and `make test` work on a fresh machine: they install what they need first.
# The virtual environment is rebuilt only when the requirements in pyproject.toml change (not its tool settings).
VENV   ?= .venv
PY     := $(VENV)/bin/python
REQS   := $(shell sed -n '/^requires-python/,/^\[project.scripts\]/p' pyproject.toml | sha1sum | cut -c1-12)
STAMP  := $(VENV)/.installed-$(REQS)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DATA   := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP) $(DATA)

# Quiet set-up: one line per step; apt and pip print errors only (-qq: pip's warnings about this machine's
# index configuration are not the user's business; apt's stderr is shown only when it fails, since debconf
# writes notes there on success).
$(DATA):
	@echo "installing the Debian package dataset-fashion-mnist"
	@$(SUDO) apt-get update -qq
	@err=$$($(SUDO) apt-get install -y -qq dataset-fashion-mnist 2>&1 > /dev/null) || { echo "$$err" >&2; exit 1; }

$(STAMP):
	@echo "installing the Python environment in $(VENV) (again only when the requirements change)"
	@python3 -m venv $(VENV)
	@$(PY) -m pip install -qq --upgrade pip
	@$(PY) -m pip install -qq -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(VENV)/bin/diffrep quickstart --out out/quickstart

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) benchmarks/teacher_features.py
	$(PY) benchmarks/distill_step.py
	$(PY) benchmarks/pdae_step.py
	$(PY) benchmarks/cli_start.py
	$(PY) benchmarks/probe_grid.py
	$(PY) benchmarks/features_memory.py
	$(PY) benchmarks/dpm_step.py

clean:
	rm -rf out .pytest_cache
