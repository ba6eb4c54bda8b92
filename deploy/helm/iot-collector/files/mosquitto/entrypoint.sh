#!/bin/sh
# Creates Mosquitto's password file from environment variables, then starts the broker.
# Passwords never sit in the repository: compose passes them from .env, the Helm chart from a
# Secret (see docs/deployment.md). Shared by deploy/compose and the Helm chart's local broker.
set -eu

: "${MQTT_COLLECTOR_PASSWORD:?set MQTT_COLLECTOR_PASSWORD}"
: "${MQTT_SIMULATOR_PASSWORD:?set MQTT_SIMULATOR_PASSWORD}"

# The paths can be moved for tests (tests/deploy/test_deploy_mosquitto.py); containers use the defaults.
auth_dir="${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}"
data_dir="${MOSQUITTO_DATA_DIR:-/mosquitto/data}"
config="${MOSQUITTO_CONFIG:-/mosquitto/config/mosquitto.conf}"
passwd_file="${auth_dir}/passwd"
mkdir -p "${auth_dir}"
umask 077
: > "${passwd_file}"
mosquitto_passwd -b "${passwd_file}" collector "${MQTT_COLLECTOR_PASSWORD}"
mosquitto_passwd -b "${passwd_file}" simulator "${MQTT_SIMULATOR_PASSWORD}"
# As root (compose), hand the files to the mosquitto user the broker drops to; as non-root
# (Kubernetes runAsNonRoot) they already belong to the running user.
if [ "$(id -u)" = 0 ]; then
    chown -R mosquitto:mosquitto "${auth_dir}" "${data_dir}"
fi

exec mosquitto -c "${config}"
