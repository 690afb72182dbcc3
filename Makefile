# make setup  - virtualenv in .venv with the pinned requirements (once; again when requirements.txt changes)
# make demo   - synthetic data in input/ (only if input/ holds none), CPU training of 3 folds, evaluation
# make test   - lint (ruff check, ruff format --check) and the test suite (what CI runs)
# make detection-report - the shipped detection recipe trained on the CPU and scored on the held-out benchmark
#                (configs/detection_cpu.yaml -> bench/results/detection-cpu/), data generated if missing
# make scan-report - scan.py against turbo_seti on 8 generated filterbank cadences (bench/results/scan/);
#                turbo_seti from TURBO_SETI_PYTHON (see docs/scan.md#the-benchmark-against-turbo_seti)
# make scan-model-report - the scan's model (configs/scan_cpu.yaml) trained on the CPU, then the scan with it against
#                the scan alone and turbo_seti on the scan benchmark's cadences and on a second, wider set
#                (bench/results/scan-model/, bench/results/scan-model-wide/)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# simply expanded once, so training and evaluation name the same run folder
ifndef DEMO_RUN
DEMO_RUN := demo-$(shell date -u +%Y%m%d-%H%M%S)
endif
DEMO_DATA := input
ifndef SCAN_MODEL_RUN
SCAN_MODEL_RUN := scan-cpu-$(shell date -u +%Y%m%d-%H%M%S)
endif
SCAN_MODEL_BENCH = --torch-threads 1 --turbo-seti on --turbo-seti-python $(TURBO_SETI_PYTHON) --snr 5 \
	--skip-memory --overwrite
ifndef RECIPE_RUN
RECIPE_RUN := detection-cpu-$(shell date -u +%Y%m%d-%H%M%S)
endif
export PATH := $(CURDIR)/$(BIN):$(PATH)

TURBO_SETI_PYTHON ?= /tmp/ts/bin/python

.PHONY: setup demo test detection-report scan-report scan-model-report clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-cache-dir -r requirements.txt
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
	@echo "report (training and evaluation): outputs/$(DEMO_RUN)/report.md"

detection-report: setup
	@[ -e input/wide/train_labels.csv ] || \
		$(BIN)/python -m src.synth --preset benchmark --out input/wide --n-train 4500 --n-test 10 --seed 77
	@[ -e input/bench/test_labels.csv ] || \
		$(BIN)/python -m src.synth --preset benchmark --out input/bench --n-test 2000 --seed 1001
	$(BIN)/python main.py --config configs/detection_cpu.yaml --data-dir input/wide --run-name $(RECIPE_RUN)
	$(BIN)/python bench/detection.py --runs outputs/$(RECIPE_RUN) --data-dir input/bench \
		--out bench/results/detection-cpu --turbo-seti-limit 300 --overwrite
	mkdir -p bench/results/detection-cpu/run
	cp outputs/$(RECIPE_RUN)/config.yaml outputs/$(RECIPE_RUN)/metrics.csv outputs/$(RECIPE_RUN)/report.md \
		bench/results/detection-cpu/run/

scan-report: setup
	$(BIN)/python bench/scan.py --data input/fb-bench --out bench/results/scan --generate --torch-threads 1 \
		--turbo-seti on --turbo-seti-python $(TURBO_SETI_PYTHON) --overwrite

scan-model-report: setup
	@[ -e input/fb-snippets/train_labels.csv ] || \
		$(BIN)/python -m src.synth.snippets --out input/fb-snippets --n-train 40000 --n-test 2000 --seed 5
	$(BIN)/python main.py --config configs/scan_cpu.yaml --data-dir input/fb-snippets --run-name $(SCAN_MODEL_RUN)
	$(BIN)/python bench/scan.py --data input/fb-bench --out bench/results/scan-model --generate \
		--checkpoints outputs/$(SCAN_MODEL_RUN) $(SCAN_MODEL_BENCH)
	mkdir -p bench/results/scan-model/run
	cp outputs/$(SCAN_MODEL_RUN)/config.yaml outputs/$(SCAN_MODEL_RUN)/metrics.csv outputs/$(SCAN_MODEL_RUN)/report.md \
		bench/results/scan-model/run/
	@[ -e input/fb-wide/catalog.csv ] || $(BIN)/python -m src.synth.filterbank --out input/fb-wide \
		--shapes sine,quadratic,pulsed --rfi-near-needles 0.5 --seed 23
	$(BIN)/python bench/scan.py --data input/fb-wide --out bench/results/scan-model-wide \
		--checkpoints outputs/$(SCAN_MODEL_RUN) $(SCAN_MODEL_BENCH)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
