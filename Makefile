# The two commands of the README: `make demo` (main job: a smoke sweep on local Ray with synthetic data)
# and `make test` (the whole test suite). Both create or reuse the virtualenv in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.busray-installed
STORAGE ?= demo

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# torch and torchvision are installed first, pinned together: PyPI's torchvision imports only beside its
# matching torch, and a later unpinned resolve must not swap torch for another build.
# Byte-code is compiled once, here, in parallel: where PYTHONDONTWRITEBYTECODE is set (as on this project's
# CI machines) Python never writes .pyc files, so without them every process (each Ray trial actor and
# DDP worker) would compile torch, timm and Ray from source on import: measured, it doubled the test suite.
# -x skips what no busray process imports: the packages' own test folders, pip and setuptools, and
# subpackages pulled in only as dependencies of dependencies (measured over a whole test run: none of these
# ~5.6k of the ~18k files was imported; compiling them took ~40 % of this step). Anything skipped still
# works, compiled in memory on import. It also skips torch's test helpers written for newer Pythons,
# which do not compile on this one.
COMPILE_SKIP := py3(12|13|14)_|/site-packages/((.+/)?tests?|ray/(rllib|llm)|sympy/physics|databricks/sdk|pip|setuptools|networkx|sqlalchemy|alembic|virtualenv|pyasn1_modules)/
COMPILE = $(PY) -m compileall -q -j 0 -x '$(COMPILE_SKIP)'
SITE = $$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# torch is compiled in the background while pip installs the rest (mostly waiting on disk: the two overlap
# well on 2 cores); the last compileall does everything else and only reads the headers of torch's files.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile torch==2.14.1 torchvision==0.29.1
	$(COMPILE) $(SITE)/torch > /dev/null & $(PY) -m pip install --quiet --no-compile -e '.[dev,reference]' && wait $$!
	$(COMPILE) $(SITE) busray > /dev/null
	touch $(STAMP)

# Run again, the demo continues its Optuna study with 4 more trials (`rm -r demo` starts over).
demo: $(STAMP)
	@if [ -f $(STORAGE)/smoke/sweep.json ]; then \
	  echo "the smoke sweep exists in $(STORAGE)/: adding 4 trials to its study (rm -r $(STORAGE) starts over)"; \
	  set -x; $(VENV)/bin/busray sweep sweeps/smoke.yaml --storage $(STORAGE) --add-trials 4; \
	else set -x; $(VENV)/bin/busray sweep sweeps/smoke.yaml --storage $(STORAGE); fi

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
