# make demo   set up .venv, curate this machine's system data, print the statistics
# make test   set up .venv, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/local-system

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, so the model extra's range is met without a multi-GB CUDA build
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.4,<2.15" --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e ".[all,test]"
	touch $@

demo: install
	$(VENV)/bin/sigma curate local-system --output $(OUT)

test: install
	$(PY) -m pytest -q tests

clean:
	rm -rf out .pytest_cache
