"""Encoder effort levels: how hard `compress` searches for codes (like `cwebp -m`).

Level N searches the residual stages together with a beam of `EFFORT_BEAMS[N]` partial codes
per cell (`ResidualVQ.beam_encode`), scoring each by squared error plus the model's rate weights
times its bits in context (`vqcodec.pricing`); level 0 is greedy, stage after stage. Higher levels
are slower and give a better image for its size; the decoder is the same at every level. Kept free
of torch so the command line can describe the levels without loading it.

Measured on 10 BSDS500 val images with the rate-aware `default` model, BD-rate (PSNR) against
level 0: beam 2 -3.7%, beam 4 -5.3%, beam 16 -6.3%. Adding a further rate weight per level (as the
levels did before the model priced bits itself: 0.001 at beam 2, 0.003 at beam 16) gave -3.9% and
-5.9% and pulled the top quality down (29.21 against 29.88 dB at quality 8), so the levels only widen
the search.
"""

from __future__ import annotations

from vqcodec.errors import ArgumentError

EFFORT_BEAMS = (1, 2, 4, 8, 16)
"""Beam width of the residual-stage search at each effort level."""
DEFAULT_EFFORT = 1
"""The level `compress` uses when none is given: a beam of 2. Against greedy coding (level 0) it gave -3.96%
BD-rate (PSNR) on the first 16 BSDS500 val images and -3.7% on Kodak, for 1.28 times the whole compress
time of a 768x512 Kodak image at quality 6 (20 compresses, interleaved; 1.31 in the Kodak benchmark run),
inside the 1.3 times a default may cost now that the quantizer is fast (`vqcodec.quantizer.code_scores`)."""


def check_effort(effort: int | None) -> int:
    """`effort` validated (None gives the default)."""
    if effort is None:
        return DEFAULT_EFFORT
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort < len(EFFORT_BEAMS):
        raise ArgumentError(f"effort must be an integer 0..{len(EFFORT_BEAMS) - 1}, got {effort!r}")
    return effort
