"""The devices a PostgreSQL writer leaves out of its devices upsert for a while."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from iotcollector.storage import postgres_writer
from iotcollector.storage.postgres_writer import _Fresh

if TYPE_CHECKING:
    import pytest


def test_a_device_is_due_again_once_the_resolution_passed() -> None:
    fresh = _Fresh(timedelta(seconds=1))
    assert fresh.due(["a", "b"], 100.0) == ["a", "b"]
    fresh.written(["a"], 100.0)
    assert fresh.due(["a", "b", "c"], 100.9) == ["b", "c"]
    assert fresh.due(["a", "b"], 101.0) == ["a", "b"]


def test_forgotten_devices_are_due_at_once() -> None:
    fresh = _Fresh(timedelta(seconds=1))
    fresh.written(["a", "b", "c"], 100.0)
    fresh.forget(["b", "x"])
    assert fresh.due(["a", "b", "c"], 100.5) == ["b"]
    fresh.forget_all()
    assert fresh.due(["a", "b", "c"], 100.5) == ["a", "b", "c"]


def test_resolution_zero_sends_every_device() -> None:
    fresh = _Fresh(timedelta(0))
    fresh.written(["a"], 100.0)
    assert fresh.due(["a"], 100.0) == ["a"]


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_writer, "FRESH_DEVICES_KEPT", 10)
    fresh = _Fresh(timedelta(seconds=1))
    fresh.written([f"old-{i}" for i in range(8)], 100.0)
    # Over the bound: the expired entries go, the recent ones stay while few enough.
    fresh.written(["new-0", "new-1", "new-2"], 101.5)
    assert fresh.due(["old-0", "new-0"], 101.6) == ["old-0"]
    # A flood of new ids within the resolution: all forgotten (they are only upserted again).
    fresh.written([f"flood-{i}" for i in range(11)], 101.7)
    assert fresh.due(["new-0", "flood-0"], 101.8) == ["new-0", "flood-0"]
