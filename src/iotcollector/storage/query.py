"""The API's read queries and the bound of the kept Sparkplug births, built once for both
backends.

A :class:`Dialect` says how a backend spells a parameter and encodes a time; the rules (the
newest-first keyset, the device-list filters) are written here only. ``docs/api.md`` shows
the PostgreSQL plans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from iotcollector.domain.epoch import to_epoch_us

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from iotcollector.storage.base import DeadLetterFilter, Position, ReadingFilter, StoredBirth


def _as_is(moment: datetime) -> object:
    return moment


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one backend writes the queries.

    ``merge_sensors``: one device's readings over all its sensors are read as a merge of one
    backward index scan per sensor (a recursive CTE and ``LATERAL``), instead of one scan.
    """

    placeholder: str
    encode_time: Callable[[datetime], object]
    merge_sensors: bool


POSTGRES = Dialect(placeholder="%s", encode_time=_as_is, merge_sensors=True)
SQLITE = Dialect(placeholder="?", encode_time=to_epoch_us, merge_sensors=False)

READ_COLUMNS = 'id, device_id, sensor_type, value, unit, "timestamp"'

# Newest first for one device over all its sensors: within one sensor the timestamp is
# unique, so each branch is an ordered backward scan of the unique index that stops after
# ``limit`` rows; the condition (device, range, keyset) is applied inside. No index of its
# own: one on (device_id, timestamp) would cost every ingested reading (bench.pg_row_cost).
_DEVICE_READINGS = """
WITH RECURSIVE s(sensor_type) AS (
    SELECT min(sensor_type) FROM iot_data WHERE device_id = {p}
  UNION ALL
    SELECT (SELECT min(sensor_type) FROM iot_data
            WHERE device_id = {p} AND sensor_type > s.sensor_type)
    FROM s WHERE s.sensor_type IS NOT NULL
)
SELECT r.* FROM s CROSS JOIN LATERAL (
    SELECT {columns} FROM iot_data
    WHERE sensor_type = s.sensor_type AND {condition}
    ORDER BY "timestamp" DESC LIMIT {p}
) AS r
ORDER BY "timestamp" DESC, id DESC LIMIT {p}
"""


def readings_query(
    where: ReadingFilter, before: Position | None, limit: int, dialect: Dialect
) -> tuple[str, list[object]]:
    """The newest-first keyset query for ``where``, strictly after ``before``.

    With both ``device_id`` and ``sensor_type`` the timestamp is unique (the unique key), so
    ordering and the keyset need the timestamp only and the unique index serves it exactly;
    otherwise ``id`` breaks ties between readings of the same instant.
    """
    p, encode = dialect.placeholder, dialect.encode_time
    conditions: list[str] = []
    params: list[object] = []
    if where.device_id is not None:
        conditions.append(f"device_id = {p}")
        params.append(where.device_id)
    if where.sensor_type is not None:
        conditions.append(f"sensor_type = {p}")
        params.append(where.sensor_type)
    if where.start is not None:
        conditions.append(f'"timestamp" >= {p}')
        params.append(encode(where.start))
    unique_time = where.device_id is not None and where.sensor_type is not None
    end = where.end
    if unique_time and before is not None:
        # One upper bound rather than two: the planner estimates a single range well.
        end = before.timestamp if end is None else min(end, before.timestamp)
    if end is not None:
        conditions.append(f'"timestamp" < {p}')
        params.append(encode(end))
    if before is not None and not unique_time:
        conditions.append(f'"timestamp" <= {p} AND ("timestamp" < {p} OR id < {p})')
        moment = encode(before.timestamp)
        params += [moment, moment, before.id]
    condition = " AND ".join(conditions) or "TRUE"
    if dialect.merge_sensors and where.device_id is not None and where.sensor_type is None:
        sql = _DEVICE_READINGS.format(p=p, columns=READ_COLUMNS, condition=condition)
        return sql, [where.device_id, where.device_id, *params, limit, limit]
    order = '"timestamp" DESC' if unique_time else '"timestamp" DESC, id DESC'
    sql = f"SELECT {READ_COLUMNS} FROM iot_data WHERE {condition} ORDER BY {order} LIMIT {p}"
    return sql, [*params, limit]


def devices_query(
    *,
    after: str | None,
    limit: int,
    status: str | None,
    online_since: datetime | None,
    dialect: Dialect,
) -> tuple[str, list[object]]:
    """Devices ordered by id after ``after``; with ``status``, those online (or not) since
    ``online_since`` in the sense of :meth:`~iotcollector.storage.base.DeviceRecord.is_online`."""
    p = dialect.placeholder
    conditions = ["TRUE"]
    params: list[object] = []
    if after is not None:
        conditions.append(f"device_id > {p}")
        params.append(after)
    if status is not None and online_since is not None:
        online = f"(status = 'online' AND last_seen >= {p})"
        conditions.append(online if status == "online" else f"NOT {online}")
        params.append(dialect.encode_time(online_since))
    sql = (
        "SELECT device_id, first_seen, last_seen, status FROM devices "
        f"WHERE {' AND '.join(conditions)} ORDER BY device_id LIMIT {p}"
    )
    return sql, [*params, limit]


REJECTED_COLUMNS = "id, received_at, topic, payload, reason, replayed_at"


def rejected_query(
    where: DeadLetterFilter, after: int | None, limit: int, *, oldest_first: bool, dialect: Dialect
) -> tuple[str, list[object]]:
    """Dead letters by id (the primary key: newest first, or oldest first for replays)."""
    p = dialect.placeholder
    conditions: list[str] = []
    params: list[object] = []
    if where.reason is not None:
        # The code is the reason's text before ':' (e.g. "invalid_json: payload is not...").
        conditions.append(f"substr(reason, 1, {p}) = {p}")
        params += [len(where.reason) + 1, where.reason + ":"]
    if where.topic is not None:
        if where.topic.endswith("#"):
            prefix = where.topic[:-1]
            conditions.append(f"substr(topic, 1, {p}) = {p}")
            params += [len(prefix), prefix]
        else:
            conditions.append(f"topic = {p}")
            params.append(where.topic)
    if where.start is not None:
        conditions.append(f"received_at >= {p}")
        params.append(dialect.encode_time(where.start))
    if where.end is not None:
        conditions.append(f"received_at < {p}")
        params.append(dialect.encode_time(where.end))
    if where.pending:
        conditions.append("replayed_at IS NULL")
    if after is not None:
        conditions.append(f"id > {p}" if oldest_first else f"id < {p}")
        params.append(after)
    condition = " AND ".join(conditions) or "TRUE"
    order = "id" if oldest_first else "id DESC"
    sql = (
        f"SELECT {REJECTED_COLUMNS} FROM iot_rejected WHERE {condition} ORDER BY {order} LIMIT {p}"
    )
    return sql, [*params, limit]


_BIRTH_ORDER = "received_at DESC, node_key DESC, device DESC"
_BIRTH_KEY = "(received_at, node_key, device)"


def births_query(
    before: StoredBirth | None, limit: int, *, dialect: Dialect
) -> tuple[str, list[object]]:
    """Kept Sparkplug births, newest received first, strictly after ``before``: a keyset on
    ``sparkplug_births_newest_idx``. On equal times an edge node's NBIRTH (device '') comes
    after its DBIRTHs; an NBIRTH forgets its node's earlier births, so reading newest first
    meets each node's births in reverse order of arrival."""
    p = dialect.placeholder
    condition, params = "TRUE", []
    if before is not None:
        condition = f"{_BIRTH_KEY} < ({p}, {p}, {p})"
        params = [dialect.encode_time(before.received_at), before.node_key, before.device]
    sql = (
        "SELECT topic, payload, received_at, node_key, device FROM sparkplug_births "
        f"WHERE {condition} ORDER BY {_BIRTH_ORDER} LIMIT {p}"
    )
    return sql, [*params, limit]


def trim_births_query(keep: int, *, dialect: Dialect) -> tuple[str, list[object]]:
    """Delete all but the ``keep`` (at least 1) newest kept births."""
    p = dialect.placeholder
    sql = (
        f"DELETE FROM sparkplug_births WHERE {_BIRTH_KEY} < "
        f"(SELECT received_at, node_key, device FROM sparkplug_births ORDER BY {_BIRTH_ORDER} "
        f"LIMIT 1 OFFSET {p})"
    )
    return sql, [keep - 1]


class BirthTrim:
    """Which batches also trim ``sparkplug_births`` to its ``kept`` newest births: the first
    with births after start, then one per ``kept // 10`` births stored. The trim's index scan
    of ``kept`` rows is paid once per that many births, not by every batch; the table holds
    at most ``kept + kept // 10`` births per writer. Used by one writer at a time."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._every = max(1, kept // 10)
        self._since = self._every

    def due(self, births: int) -> bool:
        """Whether a batch storing ``births`` births also trims."""
        return births > 0 and self._since + births >= self._every

    def committed(self, births: int, *, trimmed: bool) -> None:
        """The batch committed (a failed one leaves the count: the next batch trims)."""
        self._since = 0 if trimmed else self._since + births
