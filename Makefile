# nmt: `make help` lists the targets. Every target that needs the venv creates it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On the project's CPU machines torch 2.13.0 resolves to the local CPU wheel; set
# CONSTRAINTS= (empty) to let pip resolve pyproject's ranges instead.
CONSTRAINTS ?= constraints.txt
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
export NMT_DATA_MIRROR ?= $(if $(wildcard ../shared/data/SHA256SUMS),$(abspath ../shared/data),)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint prepare quickstart multi30k how-far embeddings-study tatoeba shakespeare bench gpu-check clean

help: ## Show this help
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(PIP_C) -e '.[dev,tensorboard,serve]'
	@touch $@

install: $(BIN)/.installed ## Create .venv and install nmt with its dev tools (idempotent)

test: install ## Run the default test suite (a few minutes on 2 cores)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: install ## Run every test, slow end-to-end ones included
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install ## Ruff lint and format check
	$(BIN)/ruff check nmt tests
	$(BIN)/ruff format --check nmt tests

prepare: install ## Download (or take from the mirror) and tokenize Multi30k
	$(BIN)/nmt-prepare data=multi30k_en_fr

quickstart: install ## Prepare, train (≤12 min on 2 cores), translate and score Multi30k (6-15 min)
	bash recipes/quickstart/run.sh

multi30k: install ## Recipe multi30k_en_fr: 90 min of training on 2 cores, 3 test sets scored
	EXAMPLES=3 bash recipes/run.sh multi30k_en_fr

how-far: install ## Test BLEU of every kept step_*.pt of RUN=<multi30k run> against minutes and #20's goals
	$(if $(RUN),,$(error set RUN=runs/multi30k_en_fr/<run>, a run trained with train.keep_last=60))
	$(BIN)/python recipes/multi30k_en_fr/how_far.py $(RUN) $(HOW_FAR_ARGS)

embeddings-study: install ## Multi30k 1k-29k pairs x random/word2vec/GloVe+fastText embeddings (~2 h on 2 cores)
	$(BIN)/python recipes/multi30k_en_fr/embeddings_study.py $(STUDY_ARGS)

tatoeba: install ## Recipe tatoeba_en_fr: grouped split, BLEU/chrF on its test split
	EXAMPLES=3 bash recipes/run.sh tatoeba_en_fr

shakespeare: install ## Recipe shakespeare_char: char-RNN language model, then generated text
	bash recipes/shakespeare_char/run.sh

bench: install ## Speed benchmark of the reference model (writes bench.json; BENCH_ARGS=--quick)
	$(BIN)/nmt-bench --out bench.json $(BENCH_ARGS)

gpu-check: install ## On a CUDA GPU: CUDA tests, 3 min of Multi30k in bf16, beam 5 (writes gpu_check.json)
	$(BIN)/nmt-gpu-check --out gpu_check.json $(GPU_CHECK_ARGS)

clean: ## Remove run folders and caches (keeps .venv)
	rm -rf runs multirun outputs .nmt_cache bench.json gpu_check.json .pytest_cache
