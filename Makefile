# make train: set up and run the main job.   make test: set up and run the checks CI runs.
# Everything goes into a virtual environment of its own, .venv (made on the first run with python3 -m venv: a
# system Python that refuses pip, PEP 668, is fine). PYTHON=... uses another interpreter instead, as it is.
# TORCH picks the torch build: the default is the CPU wheel; on a GPU machine use e.g. `make test TORCH=torch`.
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
BASE_PYTHON ?= python3
TORCH ?= torch==2.13.0
# pip runs again only when pyproject.toml, TORCH or the interpreter changes (it takes about 20 s even when
# everything is there): a stamp per interpreter and torch build
STAMP := .make/installed-$(subst /,_,$(PYTHON))-$(subst =,_,$(TORCH))

.PHONY: install data train test test-all test-lightning-oldest test-extras test-wheel lint typecheck docs preview generate

install: $(STAMP)

$(STAMP): pyproject.toml
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ] && [ ! -x "$(PYTHON)" ]; then \
		echo "creating the virtual environment $(VENV) ($(BASE_PYTHON) -m venv $(VENV))"; \
		$(BASE_PYTHON) -m venv $(VENV) || exit 1; \
	fi
	$(PYTHON) -m pip install -q "$(TORCH)"
	$(PYTHON) -m pip install -q -e ".[dev]"
	@mkdir -p .make && touch $@

# Fashion-MNIST from Debian's package (tests that need it skip without it; needs root and apt)
FASHION := /usr/share/datasets/fashion-mnist
data:
	@test -d $(FASHION) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& echo "installing Fashion-MNIST for its tests: apt-get install dataset-fashion-mnist (as root)" \
		&& (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "Fashion-MNIST not installed: its tests will skip (apt-get install dataset-fashion-mnist)"; }

train: install
	$(PYTHON) train.py schedule=onecycle

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# the schedule callbacks' signatures and Args, written from their shapes' fields (a test fails when they are stale)
generate: install
	$(PYTHON) -m lightning_cyclic.callbacks.generate

# the package's types, as pyproject.toml's [tool.mypy] configures them
typecheck: install
	$(PYTHON) -m mypy

# the docs (the README, the recipes and the API reference from the docstrings) in site/: open site/index.html.
# --strict: any warning (a broken link, a docstring that does not match its signature) fails the build
docs: install
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict

# pytest on every core (-n auto: pytest-xdist), one torch thread per worker so that workers do not fight over cores
# (tests that share a venv they build are one xdist_group: one worker runs them)
PYTEST := OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -p no:cacheprovider -n auto --dist loadgroup

test: install data lint typecheck docs
	$(PYTEST) -m "not slow"
	$(MAKE) --no-print-directory test-lightning-oldest
	$(MAKE) --no-print-directory test-extras

# The oldest Lightning pyproject.toml allows: the callbacks and their integration tests run on it too, in a venv
# that sees every package of $(PYTHON)'s environment (a .pth file adds its site-packages after its own) and
# holds only lightning and pytorch-lightning of its own, pinned down (and a setuptools with pkg_resources, which
# that Lightning imports).
LIGHTNING_OLDEST := $(shell sed -n 's/.*"lightning>=\([0-9.]*\)".*/\1/p' pyproject.toml)
OLDEST_VENV := .venv-lightning-oldest
test-lightning-oldest: install
	@echo "Lightning $(LIGHTNING_OLDEST) (the oldest allowed): callbacks and integration tests"
	@test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv --without-pip $(OLDEST_VENV)
	@base=$$($(PYTHON) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
		own=$$($(OLDEST_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
		echo "import site; site.addsitedir('$$base')" > "$$own/_lightning_cyclic_base.pth"
	$(PYTHON) -m pip install -q --no-deps --target "$$($(OLDEST_VENV)/bin/python -c "import sysconfig; \
		print(sysconfig.get_paths()['purelib'])")" --upgrade "lightning==$(LIGHTNING_OLDEST)" \
		"pytorch-lightning==$(LIGHTNING_OLDEST)" "setuptools<81"
	OMP_NUM_THREADS=1 $(OLDEST_VENV)/bin/python -m pytest -m "not slow" -q -p no:cacheprovider -n auto \
		tests/integration tests/callbacks tests/test_mixins.py tests/test_optim.py

# Every extra as users install it (tests/test_fresh_install.py, marked slow; about 3 minutes on 2 cores): fresh venvs,
# pip's own resolution of the built wheel, nothing of [dev]; torch is this environment's version (the local CPU
# wheel), installed once and hard-linked into each venv. The core fits with the callbacks, [app] runs
# `lightning-cyclic train`, [sweeps] a two-trial `train.py -m hparams_search=optuna` with pruning, and [sweeps] goes
# beside Optuna 5 and SQLAlchemy 2 without changing them (pip's install report). -rP prints what pip resolved.
test-extras: install
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -p no:cacheprovider -rP tests/test_fresh_install.py

test-all: install data lint
	$(PYTEST)

# The built wheel as pip users get it, used from outside the clone (tests/test_install.py, marked slow: part of
# test-all): in .venv-wheel with [app,sweeps] and in .venv-core with the core alone. The venvs are built on the
# first run (about 6 minutes on 2 cores) and reused (about 3 minutes a run); rebuilt when their requirements change.
test-wheel: install
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/test_install.py

preview: install
	$(PYTHON) recipes/schedule_preview/preview.py
