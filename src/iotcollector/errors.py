"""One error base for the project; errors are transient (retry) or permanent (isolate)."""


class IotCollectorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(IotCollectorError):
    """The configuration is invalid; the message names the variable."""


class StorageError(IotCollectorError):
    """A database operation failed."""


class TransientStorageError(StorageError):
    """The database is unreachable, restarting, overloaded: retrying later can succeed."""


class PermanentStorageError(StorageError):
    """The data or the statement is wrong: retrying the same thing cannot succeed."""


class MqttError(IotCollectorError):
    """The broker refused or broke the connection."""


class MqttRefusedError(MqttError):
    """The broker refused the connection (bad credentials, not authorised)."""
