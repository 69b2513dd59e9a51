"""Demand forecasting families behind one protocol (`base.Forecaster`): networks, LightGBM,
statistical models, and combinations of them. Importing the package registers every family, so
`load` can restore any saved model."""

from supplyml.forecasting import combination, gbm, networks, statistical  # noqa: F401  (registers families)
from supplyml.forecasting.base import Forecaster, UnknownSeriesError, load

__all__ = ["Forecaster", "UnknownSeriesError", "load"]
