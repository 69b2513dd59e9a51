# Thin wrappers around the same commands the README documents.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
SET    ?=
# Python caches each module's bytecode when it first imports it, here even where the shell says not to:
# compiling the whole venv up front took 48 s of the install (27,000 files), and a test run imports 8,000.
# pip's own compile is skipped for the same reason (--no-compile).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test check lint serve compile bench bench-policy bench-gate bench-scale install data clean k8s

run: install data                       ## whole pipeline on kfp.local: champion + Bento
	$(BIN)/supplyml pipeline run $(SET)

test: lint data                         ## lint, format and type checks, then every test (the slow ones included)
	$(BIN)/pytest -q

check: lint data                        ## the inner loop: the checks, then the tests not marked slow
	$(BIN)/pytest -q -m "not slow"

lint: install                           ## ruff (lint and format) and mypy on the core library
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

serve: install                          ## serve the latest Bento on 127.0.0.1:3000
	$(BIN)/supplyml serve $(SET)

# The generated panels (data/multistore, long, short, intermittent) have their own column names:
# the mapping is config, not code.
PANEL_MAP := --format panel \
	--set data.panel_columns.unique_id=item --set data.panel_columns.ds=date --set data.panel_columns.y=units \
	--set data.panel_columns.price=unit_price --set data.panel_columns.promo=on_promo \
	--set data.panel_columns.event=holiday --set data.panel_columns.location=store
PANELS := multistore long short intermittent

bench: install data                     ## rolling-origin benchmark vs peers on every dataset, then one table
	$(BIN)/supplyml bench --out benchmarks/results/online_retail $(SET)
	for p in $(PANELS); do \
	  $(BIN)/supplyml bench --data data/$$p/$$p.parquet $(PANEL_MAP) --out benchmarks/results/$$p $(SET) || exit 1; \
	done
	$(BIN)/python benchmarks/make_store_item.py
	$(BIN)/supplyml bench --data .supplyml/data/store_item.parquet --format panel --out benchmarks/results/store_item $(SET)
	$(BIN)/python benchmarks/make_grocery.py
	$(BIN)/supplyml bench --data .supplyml/data/grocery.parquet --format panel --out benchmarks/results/grocery $(SET)
	$(BIN)/python benchmarks/summary.py

bench-policy: install data              ## learned replenishment policies: Zipkin's instances, then Online Retail and multistore
	$(BIN)/supplyml bench --family policy --set policy.real_demand=false --out benchmarks/results/policy-known $(SET)
	$(BIN)/supplyml bench --family policy --set "policy.known_lead_times=[]" --out benchmarks/results/policy-online_retail $(SET)
	$(BIN)/supplyml bench --family policy --data data/multistore/multistore.parquet $(PANEL_MAP) \
	  --set "policy.known_lead_times=[]" --out benchmarks/results/policy-multistore $(SET)

bench-gate: install data                ## the gate measured: A/A false promotions, power, detectable effect
	$(BIN)/python benchmarks/gate.py $(SET)

bench-scale: install                    ## each pipeline step's time and memory at 1k, 4k, 16k and 32k generated series
	$(BIN)/python benchmarks/scale.py $(SET)

compile: install                        ## write pipelines/training.yaml (Kubeflow IR)
	$(BIN)/supplyml pipeline compile $(SET)

# Every overlay, rendered by the kubectl wheel from the test extra; apply with `kubectl apply -k`.
OVERLAYS := $(notdir $(wildcard k8s/overlays/*))

k8s: install                            ## render k8s/overlays/* to .supplyml/k8s/<overlay>.yaml
	mkdir -p .supplyml/k8s
	for o in $(OVERLAYS); do \
	  $(BIN)/kubectl kustomize k8s/overlays/$$o > .supplyml/k8s/$$o.yaml || exit 1; \
	done

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e ".[test]"
	touch $@

data: install                           ## restore data/ from the DVC remote
	$(BIN)/dvc pull --quiet

clean:                                  ## drop local stores: MLflow, Optuna, KFP outputs, Bentos
	rm -rf .supplyml
