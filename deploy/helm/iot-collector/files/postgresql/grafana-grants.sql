-- Read access for Grafana's PostgreSQL datasource (role iot_grafana, see 10-grafana-role.sh),
-- applied after `iot-collector migrate` has created the tables. Not iot_rejected: it holds raw
-- payloads. Idempotent: compose and the Helm chart run it after every migration.
GRANT USAGE ON SCHEMA public TO iot_grafana;
GRANT SELECT ON iot_data, devices TO iot_grafana;
