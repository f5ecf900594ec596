# `make demo` and `make test` build .venv/ first; the venv is rebuilt only when
# pyproject.toml changes (the stamp file records the last successful install).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python

.PHONY: demo test venv clean bench chromium

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,test]"
	# tf-keras (legacy .h5 models) declares a dependency on "tensorflow", which would pull the
	# full GPU-enabled wheel beside tensorflow-cpu; install it without dependencies instead.
	$(PY) -m pip install --quiet --no-deps "tf-keras==2.21.0"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/onnxgate demo --workdir demo-out

# The HTML report tests render in real headless Chromium: Debian's package (CI runs as root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

test: $(STAMP) chromium
	$(PY) -m pytest -q -n 2 --dist loadgroup

bench: $(STAMP)
	$(PY) benchmarks/bench_cli.py

clean:
	rm -rf $(VENV) demo-out build src/*.egg-info
