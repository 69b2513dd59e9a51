"""The `supplyml` command line: the composition root. It wires the core library to Kubeflow Pipelines
(`pipelines/`) and BentoML (`serving/`), so `supplyml/` itself imports neither."""
