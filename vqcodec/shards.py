"""Splitting a job across machines with no coordinator: shard K of N of a sorted file list.

`--shard K/N` (K = 0..N-1) keeps the files at positions K, K + N, K + 2N, ... of the
list sorted by path, so N jobs of an array (Slurm `--array=0-(N-1)`, Kubernetes indexed
jobs' `JOB_COMPLETION_INDEX`) each take a disjoint share, similar in size, and together
exactly the files one unsharded run would take.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from vqcodec.errors import VqcodecError

T = TypeVar("T")


class ShardError(VqcodecError, ValueError):
    """A shard specification is not K/N with 0 <= K < N."""


def parse(text: str) -> tuple[int, int]:
    """`"K/N"` to (K, N), checked."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ShardError(f"shard must be K/N with whole numbers (e.g. 0/4), got '{text}'") from None
    if n < 1 or not 0 <= k < n:
        raise ShardError(f"shard {text}: need N >= 1 and 0 <= K < N (shards are numbered from 0)")
    return k, n


def select(items: Sequence[T], shard: tuple[int, int] | None, key: Callable[[T], object] = str) -> list[T]:
    """The items of shard (K, N) of `items` sorted by `key`; all of them, in their order, when `shard` is None."""
    if shard is None:
        return list(items)
    k, n = shard
    return sorted(items, key=key)[k::n]  # type: ignore[arg-type]
