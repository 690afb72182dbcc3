# make setup  - virtualenv in .venv with the pinned requirements (once; again when requirements.txt changes)
# make demo   - synthetic data in input/ (only if input/ holds none), CPU training of 3 folds, evaluation
# make test   - the test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# simply expanded once, so training and evaluation name the same run folder
ifndef DEMO_RUN
DEMO_RUN := demo-$(shell date -u +%Y%m%d-%H%M%S)
endif
DEMO_DATA := input
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

demo: setup
	@if [ -e $(DEMO_DATA)/train_labels.csv ]; then \
		echo "$(DEMO_DATA)/ already holds data: training on it (nothing is regenerated or overwritten)"; \
	else \
		$(BIN)/python -m src.synth --out $(DEMO_DATA) --n-train 3000 --n-test 600; \
	fi
	accelerate launch --config_file accelerate_config.yaml main.py --config configs/demo_cpu.yaml \
		--data-dir $(DEMO_DATA) --run-name $(DEMO_RUN)
	$(BIN)/python evaluate.py --run-dir outputs/$(DEMO_RUN)
	@cat outputs/$(DEMO_RUN)/report.md

test: setup
	$(BIN)/python -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
