# make train: set up and run the main job.   make test: set up and run the checks CI runs.
# TORCH picks the torch build: the default is the CPU wheel; on a GPU machine use e.g. `make test TORCH=torch`.
PYTHON ?= python
TORCH ?= torch==2.13.0

.PHONY: install data train test test-all lint preview

install:
	$(PYTHON) -m pip install -q "$(TORCH)"
	$(PYTHON) -m pip install -q -e ".[dev]"

# Fashion-MNIST from Debian's package (tests that need it skip without it; needs root and apt)
FASHION := /usr/share/datasets/fashion-mnist
data:
	@test -d $(FASHION) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "Fashion-MNIST not installed: its tests will skip (apt-get install dataset-fashion-mnist)"; }

train: install
	$(PYTHON) train.py schedule=onecycle

lint:
	ruff check .
	ruff format --check .

test: install data lint
	$(PYTHON) -m pytest -m "not slow" -q -p no:cacheprovider

test-all: install data lint
	$(PYTHON) -m pytest -q

preview: install
	$(PYTHON) recipes/schedule_preview/preview.py
