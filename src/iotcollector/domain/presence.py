"""Device presence messages: ``online`` / ``offline`` on ``iot/status/<device_id>``.

Devices publish ``online`` (retained) when they connect and set ``offline`` (retained) as
their Last Will, so the broker announces a device that drops off. Pure, never raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from iotcollector.domain.parse import RejectionCode, is_device_id
from iotcollector.domain.reading import Rejection, StatusChange

if TYPE_CHECKING:
    from datetime import datetime

STATUSES: Final = frozenset({"online", "offline"})


def parse_status(
    topic: str, payload: bytes, *, received_at: datetime
) -> StatusChange | Rejection | None:
    """The status change a presence message carries; ``None`` for an empty (cleared) one."""
    device_id = topic.rsplit("/", 1)[-1]
    if not is_device_id(device_id):
        return Rejection(
            RejectionCode.INVALID_DEVICE_ID,
            f"the last level of status topic {topic[:60]!r} must be a device id: 1-50 "
            "characters of A-Z a-z 0-9 . _ : -",
        )
    if not payload.strip():
        return None
    status = payload.strip().strip(b'"').decode("ascii", errors="replace").lower()
    if status not in STATUSES:
        return Rejection(
            RejectionCode.INVALID_STATUS,
            f"a status message must be 'online' or 'offline' (got {payload[:40]!r})",
        )
    return StatusChange(device_id, status, received_at)
