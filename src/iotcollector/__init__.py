"""iot-collector: IoT sensor readings over MQTT into PostgreSQL or SQLite, without loss."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("iot-collector")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
