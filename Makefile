# `make demo` and `make test` work on a fresh machine: they create .venv when it is
# missing and (re)install the package only when pyproject.toml has changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR := runs/demo

.PHONY: demo test test-fast test-browser install clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

# Everything, as CI runs it, on one single-threaded worker process per core (two-thread
# workers on two cores would contend); the 15 slowest tests are listed at the end.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n auto --durations=15

# The same without the tests marked slow (over ~3 s each): for the edit-test loop.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -m 'not slow' -n auto --durations=15

# The page of `alexnet serve` in a real browser: Debian's chromium and chromium-driver are
# installed when missing (as root, or through sudo), Selenium through the `browser` extra;
# the test saves docs/images/serve.png.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-browser: $(STAMP)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver; }
	$(PY) -m pip install --quiet -e '.[all,test,browser]'
	$(PY) -m pytest tests/test_browser.py -v -rs

# Train alexnet_cifar on scikit-learn's handwritten digits (real data shipped inside an
# installed package, so no download; one warmup epoch makes the start robust to the seed),
# evaluate the best checkpoint on the held-out test split, and predict one test image
# written out as a PNG.
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/alexnet train --data digits --arch alexnet_cifar --epochs 10 --batch-size 64 \
		--lr 0.02 --warmup-epochs 1 --workers 0 --out $(DEMO_DIR)
	$(VENV)/bin/alexnet evaluate --checkpoint $(DEMO_DIR)/checkpoints/best.pt --data digits --workers 0
	$(VENV)/bin/alexnet prepare digits --to-folders $(DEMO_DIR)/digits
	$(VENV)/bin/alexnet predict --checkpoint $(DEMO_DIR)/checkpoints/best.pt --top-k 3 \
		$(DEMO_DIR)/digits/test/7/$$(ls $(DEMO_DIR)/digits/test/7 | head -n 1)
	@echo "run folder: $(DEMO_DIR) (config.json, metrics.csv, curves.png, tb/, checkpoints/best.pt, checkpoints/last.pt)"

clean:
	rm -rf $(VENV) runs
