# The two commands of the README: `make demo` (main job: a smoke sweep on local Ray with synthetic data)
# and `make test` (the whole test suite). Both create or reuse the virtualenv in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.busray-installed
STORAGE ?= demo

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# torch and torchvision are installed first, pinned together: PyPI's torchvision imports only beside its
# matching torch, and a later unpinned resolve must not swap torch for another build. --no-compile:
# Python compiles what it imports on first use; byte-compiling all of torch up front costs minutes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/busray sweep sweeps/smoke.yaml --storage $(STORAGE)

# Two pytest workers: the Ray tests run in one of them, one after another on the session's local Ray
# (tests/conftest.py groups them), while the other worker takes the rest of the suite.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadscope

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow and not ray"

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(STORAGE) runs .pytest_cache
