-- Runs once, on an empty data directory (the postgres image's /docker-entrypoint-initdb.d).
-- mlflow: runs and registry; mlflow_auth: basic-auth users and permissions (its own migrations);
-- optuna: the shared study that parallel tuning workers use.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE optuna;
