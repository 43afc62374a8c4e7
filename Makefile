# The README's two commands: `make demo` (main job on tiny-random, offline) and `make test`.
# Each installs what it needs into .venv and is safe to rerun.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: an unpinned requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dail-harness list tasks
	$(BIN)/dail-harness eval --task aime24 --model tiny-random --n 8 --k 1,2,4,8 --max-tokens 64 --out runs/demo
	$(BIN)/dail-harness report runs/demo --plot runs/demo/pass_at_k.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
