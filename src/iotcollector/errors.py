"""One error base for the project; errors are transient (retry) or permanent (isolate)."""


class IotCollectorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(IotCollectorError):
    """The configuration is invalid; the message names the variable."""


class StorageError(IotCollectorError):
    """A database operation failed; ``code``: the SQLSTATE (PostgreSQL) or SQLite error name."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientStorageError(StorageError):
    """The database is unreachable, restarting, overloaded: retrying later can succeed."""


class PermanentStorageError(StorageError):
    """Retrying the same thing cannot succeed until someone changes something.

    For one row's data the row is isolated (dead-lettered) and the rest lands. For a whole
    batch (read-only database, missing privilege, schema mismatch) ingest stalls: nothing is
    acknowledged, and at start-up the process exits.
    """


class MqttError(IotCollectorError):
    """The broker refused or broke the connection."""


class MqttRefusedError(MqttError):
    """The broker refused the connection or a subscription; ``code``: its MQTT 5 reason code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
