#!/bin/sh
# PostgreSQL init script (/docker-entrypoint-initdb.d, runs once on an empty data directory):
# creates iot_grafana, the read-only login of Grafana's PostgreSQL datasource
# (monitoring/README.md). Its SELECT grants come after the migrations (grafana-grants.sql).
# Shared by deploy/compose and the Helm chart's local PostgreSQL.
set -eu

: "${GRAFANA_DB_PASSWORD:?set GRAFANA_DB_PASSWORD}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
    -v grafana_password="${GRAFANA_DB_PASSWORD}" <<'SQL'
CREATE ROLE iot_grafana LOGIN PASSWORD :'grafana_password';
SELECT format('GRANT CONNECT ON DATABASE %I TO iot_grafana', current_database()) \gexec
ALTER ROLE iot_grafana SET statement_timeout = '30s';
ALTER ROLE iot_grafana SET default_transaction_read_only = on;
SQL
