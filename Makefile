# make train: set up and run the main job.   make test: set up and run the checks CI runs.
# TORCH picks the torch build: the default is the CPU wheel; on a GPU machine use e.g. `make test TORCH=torch`.
PYTHON ?= python
TORCH ?= torch==2.13.0

.PHONY: install train test test-all lint preview

install:
	$(PYTHON) -m pip install -q "$(TORCH)"
	$(PYTHON) -m pip install -q -e ".[dev]"

train: install
	$(PYTHON) train.py schedule=onecycle

lint:
	ruff check .
	ruff format --check .

test: install lint
	$(PYTHON) -m pytest -m "not slow" -q -p no:cacheprovider

test-all: install lint
	$(PYTHON) -m pytest -q

preview: install
	$(PYTHON) recipes/schedule_preview/preview.py
