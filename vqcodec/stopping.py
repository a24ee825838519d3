"""Stopping a training run cleanly: Ctrl-C or `kill` writes a checkpoint, and the data workers stay quiet.

A stop sent to the whole process group (`pkill -f "vqcodec train"`, `kill -- -PGID`, a job scheduler ending
the job, Ctrl-C in a terminal) reaches the DataLoader workers as well as the trainer. The workers ignore
SIGTERM (`ignore_stop_signal`), so the trainer can write its checkpoint before it shuts them down. The trainer
turns SIGTERM and SIGINT into KeyboardInterrupt (`StopSignals`), but not while it is receiving a batch from a
worker: a worker hands each batch's memory over a short socket exchange (torch's file-descriptor sharing), and
an interrupt in the middle of it made the worker print a traceback (`multiprocessing.resource_sharer`) after
the trainer had stopped cleanly. A stop that arrives then takes effect as soon as the batch is in.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Iterator
from types import FrameType, TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
U = TypeVar("U")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals a trainer stops on, checkpointing first."""


def ignore_stop_signal(_worker_id: int) -> None:
    """DataLoader `worker_init_fn`: data workers ignore SIGTERM, which the trainer alone handles (it would
    otherwise fail on the dead worker instead of writing its checkpoint), then shuts its workers down."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class StopSignals:
    """Within `with StopSignals() as stops:`, SIGTERM and SIGINT raise KeyboardInterrupt, except while a batch
    of `stops.batches(loader)` is being received: then the stop is held until the batch is in (a second stop
    while one is held raises at once, so a hung worker cannot keep the trainer from stopping). Outside the
    main thread, where handlers cannot be installed, signals keep their own handling."""

    def __init__(self) -> None:
        self._receiving = False
        self._held = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._receiving and not self._held:
            self._held = True
            return
        raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        try:
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread
            self._previous.clear()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def batches(self, loader: Iterable[T]) -> Iterator[T]:
        """The items of `loader`, each received with stops held; a stop held meanwhile is raised after it."""
        items = self._receive(lambda: iter(loader))
        while True:
            try:
                item = self._receive(lambda: next(items))
            except StopIteration:
                return
            yield item

    def _receive(self, get: Callable[[], U]) -> U:
        self._receiving = True
        try:
            return get()
        finally:
            self._receiving = False
            if self._held:
                self._held = False
                raise KeyboardInterrupt
