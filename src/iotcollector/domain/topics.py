"""Per-device data topics (``IOT_MQTT_DEVICE_TOPICS``): ``iot/data/<device_id>``.

When the broker lets each device publish only to its own topic (a Mosquitto ACL ``pattern
write iot/data/%c``, an AWS IoT policy on ``iot/data/${iot:Connection.Thing.ThingName}``), the
topic names the authenticated device. A reading for another device is then refused: a stolen
certificate can no longer write readings in another device's name. Pure, never raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iotcollector.domain.parse import RejectionCode, is_device_id
from iotcollector.domain.reading import Rejection

if TYPE_CHECKING:
    from iotcollector.domain.reading import Reading


def keep_topic_device(
    topic: str, readings: list[Reading]
) -> tuple[list[Reading], Rejection | None]:
    """The readings of the device the topic's last level names, and one rejection for the rest."""
    device_id = topic.rpartition("/")[2]
    if not is_device_id(device_id):
        return [], Rejection(
            RejectionCode.DEVICE_MISMATCH,
            f"the last level of data topic {topic[:80]!r} must be the device id (per-device "
            "topics are on): 1-50 characters of A-Z a-z 0-9 . _ : -",
        )
    kept = [r for r in readings if r.device_id == device_id]
    if len(kept) == len(readings):
        return readings, None
    others = sorted({r.device_id for r in readings if r.device_id != device_id})
    named = ", ".join(repr(d) for d in others[:3]) + (", …" if len(others) > 3 else "")
    return kept, Rejection(
        RejectionCode.DEVICE_MISMATCH,
        f"{len(readings) - len(kept)} of {len(readings)} readings are for device {named}, "
        f"not for {device_id!r} whose topic {topic[:80]!r} they were published to",
    )
