# Thin wrappers around the same commands the README documents.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
SET    ?=

.PHONY: run test serve compile install data clean

run: install data                       ## whole pipeline on kfp.local: champion + Bento
	$(BIN)/supplyml pipeline run $(SET)

test: install data                      ## unit, data and integration tests (slow ones included)
	$(BIN)/pytest -q

serve: install                          ## serve the latest Bento on 127.0.0.1:3000
	$(BIN)/supplyml serve $(SET)

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
