"""supplyml: demand forecasts, replenishment decisions and recommendations from a shop's order history."""

import atexit
import gc

# Pipeline tasks and commands are short processes that import torch, Lightning and MLflow, and Python's exit
# walks all of those objects in one last collection: 1.3 s a process, 20 processes a pipeline run. Frozen at
# exit, the collector skips them.
atexit.register(gc.freeze)
