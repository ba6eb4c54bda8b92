"""A device process for presence tests: Last Will ``offline``, ``online`` on connect, readings.

Run as ``python tests/support/device.py PORT DEVICE_ID INTERVAL_S COUNT``; a SIGKILL leaves
the broker to publish its Last Will.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main(port: int, device_id: str, interval_s: float, count: int) -> None:
    status = f"iot/status/{device_id}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id)
    client.will_set(status, "offline", qos=1, retain=True)
    client.connect("127.0.0.1", port, keepalive=5)
    client.loop_start()
    client.publish(status, "online", qos=1, retain=True).wait_for_publish(10)
    for _ in range(count):
        reading = {
            "device_id": device_id,
            "sensor_type": "temperature",
            "value": 21.5,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        client.publish("iot/data", orjson.dumps(reading), qos=1).wait_for_publish(10)
        time.sleep(interval_s)
    print("ready", flush=True)
    while True:  # stay connected and silent until killed
        time.sleep(1)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
