#!/usr/bin/with-contenv bashio
# Starts the bridge with /config/<config_file>. The Mosquitto add-on's host, port and a login are handed over as
# MQTT_HOST, MQTT_PORT, MQTT_USERNAME and MQTT_PASSWORD, for `!env_var` in bridge.yaml.
set -e
config="/config/$(bashio::config 'config_file')"
if ! bashio::fs.file_exists "${config}"; then
    bashio::exit.nok "${config} not found: create it (see the add-on documentation)"
fi
if bashio::services.available "mqtt"; then
    export MQTT_HOST="$(bashio::services mqtt 'host')"
    export MQTT_PORT="$(bashio::services mqtt 'port')"
    export MQTT_USERNAME="$(bashio::services mqtt 'username')"
    export MQTT_PASSWORD="$(bashio::services mqtt 'password')"
fi
cd /data
exec acs-email-bridge run --config "${config}"
