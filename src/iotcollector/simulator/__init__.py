"""Device simulator, load generator and fault injector (``iot-collector simulate``).

``models`` (device physics), ``payloads`` and ``stream`` (what is sent), ``packets`` and
``connection`` (MQTT 5 or 3.1.1 on asyncio), ``runner`` (rates, bounds, summary), ``cli``
(options), ``alongside`` (``iot-collector up --simulate N``).
"""
