# make demo   set up .venv, curate this machine's system data, print the statistics
# make test   set up .venv with every extra, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q
OUT ?= out/local-system

.PHONY: demo test install clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ".[quality]"
	touch $@

# the CPU build of torch first, so the model extra's range is met without a multi-GB CUDA build
$(VENV)/.all: $(VENV)/.core
	$(PIP) "torch==2.13.0" || $(PIP) "torch>=2.5,<2.15" --index-url https://download.pytorch.org/whl/cpu
	$(PIP) -e ".[all,test]"
	touch $@

install: $(VENV)/.all

demo: $(VENV)/.core
	$(VENV)/bin/sigma curate local-system --output $(OUT)
	$(VENV)/bin/sigma stats $(OUT) --html $(OUT)/report.html

test: $(VENV)/.all
	$(PY) -m pytest -q tests

clean:
	rm -rf out .pytest_cache
