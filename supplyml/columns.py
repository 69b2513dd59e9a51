"""The daily panel's column roles, with no dependencies: the data, features, validation, the forecasting
protocol and the service all read them from here."""

PANEL_REQUIRED = ("unique_id", "ds", "y")
FLAGS = ("promo", "event")  # 0/1 daily flags a shop knows in advance: a forecaster may read them for future days
DAILY_COLUMNS = [*PANEL_REQUIRED, "price", *FLAGS]  # the featurized panel, one row per series and day
