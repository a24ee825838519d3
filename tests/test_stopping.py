"""A stop reaches the trainer between batches, never while it receives one from a data worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from vqcodec.stopping import STOP_SIGNALS, StopSignals


def _stop() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_while_a_batch_is_received_takes_effect_once_it_is_in() -> None:
    finished: list[int] = []

    def batches() -> Iterator[int]:
        yield 0
        _stop()  # the signal arrives while the second batch is being made
        finished.append(1)
        yield 1

    seen = []
    with StopSignals() as stops, pytest.raises(KeyboardInterrupt):
        for batch in stops.batches(batches()):
            seen.append(batch)
    assert seen == [0] and finished == [1]


def test_a_stop_between_batches_and_a_second_stop_while_one_is_held_raise_at_once() -> None:
    with StopSignals() as stops, pytest.raises(KeyboardInterrupt):
        for _ in stops.batches(range(3)):
            _stop()
            pytest.fail("the stop between batches did not raise")

    reached = []

    def hung() -> Iterator[int]:
        _stop()
        _stop()  # a worker that never delivers: the second stop must not wait for it
        reached.append(True)
        yield 0

    with StopSignals() as stops, pytest.raises(KeyboardInterrupt):
        list(stops.batches(hung()))
    assert reached == []


def test_the_handlers_are_restored_and_a_finished_loader_ends_quietly() -> None:
    before = [signal.getsignal(s) for s in STOP_SIGNALS]
    with StopSignals() as stops:
        assert list(stops.batches(iter([1, 2]))) == [1, 2]
        assert all(signal.getsignal(s) != b for s, b in zip(STOP_SIGNALS, before))
    assert [signal.getsignal(s) for s in STOP_SIGNALS] == before
