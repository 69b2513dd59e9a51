# Thin wrappers around the same commands the README documents.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
SET    ?=

.PHONY: run test serve compile bench install data clean

run: install data                       ## whole pipeline on kfp.local: champion + Bento
	$(BIN)/supplyml pipeline run $(SET)

test: install data                      ## unit, data and integration tests (slow ones included)
	$(BIN)/pytest -q

serve: install                          ## serve the latest Bento on 127.0.0.1:3000
	$(BIN)/supplyml serve $(SET)

# The second benchmark dataset is a panel with its own column names: the mapping is config, not code.
MULTISTORE := --data data/multistore/multistore.parquet --format panel \
	--set data.panel_columns.unique_id=item --set data.panel_columns.ds=date --set data.panel_columns.y=units \
	--set data.panel_columns.price=unit_price --set data.panel_columns.promo=on_promo \
	--set data.panel_columns.event=holiday --set data.panel_columns.location=store

bench: install data                     ## rolling-origin benchmark vs peers on both datasets
	$(BIN)/supplyml bench --out benchmarks/results/online_retail $(SET)
	$(BIN)/supplyml bench $(MULTISTORE) --out benchmarks/results/multistore $(SET)

compile: install                        ## write pipelines/training.yaml (Kubeflow IR)
	$(BIN)/supplyml pipeline compile $(SET)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

data: install                           ## restore data/ from the DVC remote
	$(BIN)/dvc pull --quiet

clean:                                  ## drop local stores: MLflow, Optuna, KFP outputs, Bentos
	rm -rf .supplyml
