"""MQTT ingest: the subscriber and its wire codec."""
