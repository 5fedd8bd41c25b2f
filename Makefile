# spinectx — every target installs first when needed, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1
export HF_HUB_OFFLINE := 1

.PHONY: help install demo demo-two-stage demo-rsna profile zoo reproduce reproduce-rsna classifiers heads report bench test test-all clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install spinectx (editable) with its test extras

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install  ## generate synthetic data, train CCF-Net R18+MSC on fold 0, print the table row
	$(BIN)/spinectx-train experiment=demo $(ARGS)

STAGE1 ?= $(lastword $(sort $(wildcard logs/demo/runs/*/checkpoints/last.ckpt)))
demo-two-stage: install  ## stage 2 (DeepScoreNet crops) on the points of the latest `make demo` run: the measured default classification path
	@test -n "$(STAGE1)" || { echo "demo-two-stage: no logs/demo/runs/*/checkpoints/last.ckpt: run make demo first (or pass STAGE1=…)"; exit 2; }
	$(BIN)/spinectx-train experiment=demo model=two_stage model.stage1_ckpt=$(STAGE1) task_name=demo_two_stage $(ARGS)

demo-rsna: install  ## RSNA 2024 spinal view on synthetic studies: CCF-Net R18+MSC, held-out log loss vs the class prior (~13 min)
	$(BIN)/spinectx-train experiment=demo_rsna $(ARGS)

profile: install  ## params/FLOPs of every paper table row beside the paper -> logs/profile.{csv,md}
	$(BIN)/spinectx-profile out=logs/profile.csv $(ARGS)

zoo: install  ## train every paper table row briefly on synthetic data (~45 min) -> experiments/model_zoo/results
	$(BIN)/python experiments/model_zoo/run.py $(ARGS)

# make reproduce [SCALE=smoke|paper] [DATA_ROOT=/data/tianchi] [ARGS='hydra/launcher=slurm ...']
SCALE  ?= smoke
DATA_ARGS := $(if $(DATA_ROOT),data=tianchi data.root=$(DATA_ROOT),)
SWEEP_ARGS = scale=$(SCALE) $(DATA_ARGS) $(ARGS)

reproduce: install  ## the paper's ablations as sweeps (Tables 1-2, data fraction), then the report -> reports/latest
	$(BIN)/spinectx-train --multirun experiment=table1 $(SWEEP_ARGS)
	$(BIN)/spinectx-train --multirun experiment=table2 $(SWEEP_ARGS)
	$(BIN)/spinectx-train --multirun experiment=data_fraction $(SWEEP_ARGS)
	$(MAKE) report

report: install  ## aggregate the three sweeps under logs/ -> reports/latest
	$(BIN)/spinectx-report 'sweep=[logs/table1/sweep,logs/table2/sweep,logs/data_fraction/sweep]' out=reports/latest

# make reproduce-rsna [SCALE=smoke|paper] [DATA_ROOT=/data/rsna2024] [ARGS='model=hrnet hydra/launcher=slurm ...']
# synthetic by default: the 200 studies of make demo-rsna (generated once into .cache/)
RSNA_DATA_ARGS := $(if $(DATA_ROOT),data=rsna2024 data.root=$(abspath $(DATA_ROOT)),data.synthetic.studies=200)
RSNA_SWEEP = logs/rsna/$(SCALE)$(if $(DATA_ROOT),_$(notdir $(abspath $(DATA_ROOT))),)

reproduce-rsna: install  ## RSNA 2024: train the 3 views (multirun), predict held-out studies, score -> reports/rsna (~28 min on 2 CPU cores)
	$(BIN)/spinectx-train --multirun experiment=rsna scale=rsna_$(SCALE) $(RSNA_DATA_ARGS) hydra.sweep.dir=$(RSNA_SWEEP) $(ARGS)
	$(BIN)/spinectx-report-rsna sweep=$(RSNA_SWEEP) out=reports/rsna $(if $(DATA_ROOT),data_root=$(abspath $(DATA_ROOT)),)

# make classifiers [TIANCHI_ROOT=DIR] [RSNA_ROOT=DIR] [SCALE=smoke|paper] [ARGS=...]: issue 14's heads on the same
# folds, one-stage heads first (the cell read-out job is stage 1 of the two-stage heads of its data, view and fold)
CLS_TIANCHI = $(if $(TIANCHI_ROOT),data=tianchi data.root=$(abspath $(TIANCHI_ROOT)),data=synthetic) scale=$(SCALE)
CLS_RSNA = $(if $(RSNA_ROOT),data=rsna2024 data.root=$(abspath $(RSNA_ROOT)),data=rsna2024_synthetic data.synthetic.studies=200) \
	data.view=spinal,foraminal,subarticular scale=$(if $(filter paper,$(SCALE)),rsna_paper,classifiers_rsna)

classifiers: install  ## classification heads (cell, Bi-LSTM, transformer, two-stage DeepScoreNet / timm) on TianChi + RSNA views -> reports/classifiers
	$(BIN)/spinectx-train --multirun experiment=classifiers $(CLS_TIANCHI) classifier=cell,bilstm,transformer hydra.sweep.dir=logs/classifiers/$(SCALE)/tianchi $(ARGS)
	$(BIN)/spinectx-train --multirun experiment=classifiers $(CLS_TIANCHI) classifier=deepscorenet,timm_crop hydra.sweep.dir=logs/classifiers/$(SCALE)/tianchi $(ARGS)
	$(BIN)/spinectx-train --multirun experiment=classifiers $(CLS_RSNA) classifier=cell,bilstm,transformer hydra.sweep.dir=logs/classifiers/$(SCALE)/rsna $(ARGS)
	$(BIN)/spinectx-train --multirun experiment=classifiers $(CLS_RSNA) classifier=deepscorenet,timm_crop hydra.sweep.dir=logs/classifiers/$(SCALE)/rsna $(ARGS)
	$(BIN)/spinectx-report sweep=[logs/classifiers/$(SCALE)/tianchi,logs/classifiers/$(SCALE)/rsna] out=reports/classifiers

INDEPENDENT_ROOT ?= .cache/independent/n300_seed7
HEADS ?= cell,bilstm,deepscorenet,timm_crop
heads: install  ## heads at the demo budget on independently generated data, AUC beside the level prior -> logs/heads/heads.md
	test -f $(INDEPENDENT_ROOT)/independent_cues.json || $(BIN)/python experiments/classifiers/independent_tianchi.py --out $(INDEPENDENT_ROOT) --studies 300 --seed 7 --jobs 2
	$(BIN)/python experiments/classifiers/heads_on_data.py --root independent=$(INDEPENDENT_ROOT) --out logs/heads --heads $(HEADS) $(ARGS)

bench: install  ## performance figures beside their references (~10 min) -> logs/bench/{bench.json,bench.md,bench_scaling.png}
	$(BIN)/spinectx-bench $(ARGS)

test: install  ## the test suite (fast; what CI runs)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

test-all: install  ## every test, the slow ones too
	$(BIN)/python -m pytest $(ARGS)

clean:  ## remove caches and run logs (keeps .venv)
	rm -rf .cache logs .pytest_cache
