"""Encoder effort levels: how hard `compress` searches for codes (like `cwebp -m`).

Level N searches the residual stages together with a beam of `EFFORT_BEAMS[N]` partial codes
per cell (`ResidualVQ.beam_encode`); level 0 is greedy, stage after stage. Higher levels are
slower and give a better image for its size; the decoder is the same at every level. Kept free
of torch so the command line can describe the levels without loading it.
"""

from __future__ import annotations

from vqcodec.errors import ArgumentError

EFFORT_BEAMS = (1, 2, 4, 8, 16)
"""Beam width of the residual-stage search at each effort level."""
DEFAULT_EFFORT = 1
"""The level `compress` uses when none is given."""


def check_effort(effort: int | None) -> int:
    """`effort` validated (None gives the default)."""
    if effort is None:
        return DEFAULT_EFFORT
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort < len(EFFORT_BEAMS):
        raise ArgumentError(f"effort must be an integer 0..{len(EFFORT_BEAMS) - 1}, got {effort!r}")
    return effort
