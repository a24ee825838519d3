"""Encoder effort levels: how hard `compress` searches for codes (like `cwebp -m`).

Level N searches the residual stages together with a beam of `EFFORT_BEAMS[N]` partial codes
per cell (`ResidualVQ.beam_encode`), scoring each by squared error plus `EFFORT_RATE_WEIGHTS[N]`
times its bits under the prior (a wider search finds lower error but, unpriced, rarer codes);
level 0 is greedy, stage after stage. Higher levels are slower and give a better image for its
size; the decoder is the same at every level. Kept free of torch so the command line can describe
the levels without loading it.

Chosen on 10 BSDS500 val images, BD-rate (PSNR) against level 0: beam 2 -2.7% unpriced and
-3.5% at weight 0.001; beam 4 -3.3% and -4.5% (0.001); beam 8 -2.5% unpriced; beam 16 -1.4%
unpriced, -3.9% (0.001) and -5.4% (0.003). Beam 8's weight, 0.002, lies between its neighbours'.
"""

from __future__ import annotations

from vqcodec.errors import ArgumentError

EFFORT_BEAMS = (1, 2, 4, 8, 16)
"""Beam width of the residual-stage search at each effort level."""
EFFORT_RATE_WEIGHTS = (0.0, 0.001, 0.001, 0.002, 0.003)
"""Weight of a code's bits against squared latent error in the search, at each effort level."""
DEFAULT_EFFORT = 0
"""The level `compress` uses when none is given: greedy. Level 1 gave -3.5% BD-rate on BSDS500 val but
took 1.36 times as long to compress a Kodak image at quality 4 (383 against 282 ms in one benchmark run),
over the 1.3 times a default may cost."""


def check_effort(effort: int | None) -> int:
    """`effort` validated (None gives the default)."""
    if effort is None:
        return DEFAULT_EFFORT
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort < len(EFFORT_BEAMS):
        raise ArgumentError(f"effort must be an integer 0..{len(EFFORT_BEAMS) - 1}, got {effort!r}")
    return effort
