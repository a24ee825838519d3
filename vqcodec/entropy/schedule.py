"""The coding schedule: in which passes the cells of one stage are coded.

A stage is coded in two passes over a checkerboard. The anchors ((row + column) even) come
first, with context from earlier stages only; then the other cells, each of whose four direct
neighbours is an anchor and already known. Within a pass no cell depends on another, so a pass
is coded with one vectorised range-coder call per context.
"""

from __future__ import annotations

import numpy as np


def anchors(rows: int, cols: int) -> np.ndarray:
    """Boolean (rows, cols) mask of the first pass: cells whose row + column is even."""
    r, c = np.indices((rows, cols))
    return (r + c) % 2 == 0


def passes(rows: int, cols: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (rows, cols) index arrays of each pass, in coding order; each in raster order."""
    a = anchors(rows, cols)
    return [np.nonzero(a), np.nonzero(~a)]
