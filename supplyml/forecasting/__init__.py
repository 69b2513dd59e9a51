"""Demand forecasting families behind one protocol (`base.Forecaster`): networks, LightGBM,
statistical models, and combinations of them. The families' modules are imported where they are used
(`load` imports them, cheapest first, until it finds the saved model's kind), so what needs only the protocol does not
pay for torch and Lightning."""

from supplyml.forecasting.base import Forecaster, UnknownSeriesError, load

__all__ = ["Forecaster", "UnknownSeriesError", "load"]
