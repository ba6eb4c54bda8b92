"""When a batch with Sparkplug births also trims the kept births."""

from __future__ import annotations

from iotcollector.storage.query import BirthTrim


def test_the_first_batch_with_births_trims_then_once_per_tenth_of_the_bound() -> None:
    trim = BirthTrim(100)
    assert not trim.due(0)
    assert trim.due(1)
    trim.committed(1, trimmed=True)
    for _ in range(9):
        assert not trim.due(1)
        trim.committed(1, trimmed=False)
    assert trim.due(1)  # the tenth birth since the last trim


def test_a_failed_batch_leaves_the_trim_due() -> None:
    trim = BirthTrim(100)
    assert trim.due(3)  # not committed: the batch failed
    assert trim.due(3)
    trim.committed(3, trimmed=True)
    assert not trim.due(3)
    assert trim.due(10)
