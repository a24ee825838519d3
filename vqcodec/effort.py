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

from collections.abc import Mapping
from typing import TypeVar

from vqcodec.errors import ArgumentError

T = TypeVar("T")

EFFORT_BEAMS = (1, 2, 4, 8, 16)
"""Beam width of the residual-stage search at each effort level."""
Schedule = tuple[tuple[int, int], ...]
"""A value by how many stages a quality codes: (fewest stages, value) pairs, ascending (`by_stages`)."""

DEFAULT_EFFORTS: dict[str, Schedule] = {
    "mse": ((1, 1), (6, 3), (16, 4)),
    "ms-ssim": ((1, 4), (5, 3), (6, 4)),
}
"""The level `compress` uses when none is given, for a model of each `ModelConfig.distortion`, by how many
stages a quality codes. A beam finds more the more stages it searches together, and costs time in proportion
to them.

"mse" (`default`):

- Up to 5 stages, level 1 (a beam of 2). Against greedy coding (level 0) it gave -3.96% BD-rate (PSNR) on the
  first 16 BSDS500 val images and -3.7% on Kodak, for 1.28 times the whole compress time of a 768x512 Kodak
  image at quality 6 (20 compresses, interleaved; 1.31 in the Kodak benchmark run). The default quality of
  `default` (5 stages) keeps it, so its time is unchanged.
- From 6 stages level 3, from 16 level 4 (vqcodec 0.11.0). With the code search in bfloat16 (0.9.0) and the
  latent refinement of qualities from 16 stages (0.7.0), a wider beam costs less of a quality's whole compress
  time than when the levels were first chosen. `default` at qualities 1, 3, 5, 6, 9, 12, 16, 20, 21, 24, 26,
  27 and 28, each at the levels where the candidates differ, BD-rate (PSNR) against 0.10.0's levels (2 from
  6 stages, 3 from 21), on the first 16 BSDS500 val images / on val images 17-40:

  | levels | BD-rate, val 1-16 | val 17-40 |
  |---|---:|---:|
  | 3 from 9, 4 from 21 | -0.87% | -0.73% |
  | 3 from 6, 4 from 21 | -1.01% | -0.83% |
  | 3 from 6, 4 from 16 (this choice) | -1.04% | -0.85% |
  | 3 from 6, 4 from 9 | -1.15% | -0.87% |
  | 4 from 6 | -1.20% | -0.91% |

  Level 4 below 16 stages buys 0.02-0.16% more for about 2.7 times those qualities' compress time (quality 6,
  481x321: 0.30 s at level 4, 0.11 s at 3); from 16 stages the refinement dominates the time. On `perceptual`
  (the first 16 val images, qualities 1-10) level 3 from 6 stages against 2: -0.66% BD-rate in MS-SSIM,
  fewer bits and a higher MS-SSIM at each of qualities 6-10. 0.6.0's levels (2 from 6, 3 from 21) had given
  -2.8% against level 1 everywhere on the first 16 images, and on Kodak moved the same model from +5.2% to
  +2.7% BD-rate against WebP.

"ms-ssim" (`perceptual`): level 4 at every quality but 5 stages, `perceptual`'s default quality, which has level 3
(vqcodec 0.16.0; 0.13.0-0.15.0: level 3, and level 1 at the default). In MS-SSIM a wider beam buys more than in
PSNR, and at the qualities whose latents are refined (`latent_refinement.SCHEDULES`) the refinement, not the
search, takes most of the time. On BSDS500 val images 17-24 (bits against AVIF's at the same MS-SSIM on those
images, AVIF speed 6; docs/benchmarks.md, "Wider searches and a quality under 0.08 bpp for
`perceptual`"):

- level 4 against 3 at the refined qualities: 1.2-1.7% fewer at 6-8 stages and the two lighter-priced qualities,
  0.6% at 4 stages, -0.1% to 1.0% at the shrunk ones, at about the same compress time (within the timing's
  noise, 10% either way, the refinement taking most of it);
- at the default (5 stages, not refined, for speed): level 3 against 1 3.4% fewer (+0.18 dB of MS-SSIM for the
  same bits; +0.19 dB on val images 1-8) for 2.1 times the compress time there, and 2.75 times for a 768x512
  Kodak image (263 against 95 ms, one thread; on Kodak the default went from 1.20 to 1.14 times AVIF's bits);
  level 4 another 0.6% fewer for 2 times more, so the default stays at 3.

Before (vqcodec 0.13.0), on the first 8 val images, level 3 against 1 had gained 0.09-0.16 dB of MS-SSIM at
qualities 2-5 for -0.7% to +1.2% bits, and with refinement and adaptive coding at qualities 1-4 0.13-0.26 dB
(docs/benchmarks.md, "Low qualities of an MS-SSIM model"). A beam of 32 (not a level) was another 0.2-0.9% fewer
bits than 16 at 4-8 stages for 13-25% more time there: not taken."""


def by_stages(schedule: Schedule, stages: int) -> int:
    """The value a (fewest stages, value) schedule, ascending, gives a quality that codes `stages` stages."""
    chosen = schedule[0][1]
    for fewest, value in schedule:
        if stages >= fewest:
            chosen = value
    return chosen


def spans(schedule: Schedule) -> list[tuple[str, int]]:
    """Each value of a schedule with the stage counts it covers in words: "up to 4 stages", "at 5", "from 6"."""
    out = []
    for i, (fewest, value) in enumerate(schedule):
        if i + 1 == len(schedule):
            out.append((f"from {fewest}" if i else "at every stage count", value))
        elif i == 0:
            out.append((f"up to {schedule[1][0] - 1} stages", value))
        else:
            out.append((f"at {fewest}" if schedule[i + 1][0] == fewest + 1 else f"from {fewest}", value))
    return out


def default_effort(stages: int, distortion: str = "mse") -> int:
    """The level `compress` uses, when none is given, for a quality that codes `stages` residual stages of a
    model of `distortion` (`ModelConfig.distortion`)."""
    return by_stages(_schedule(distortion), stages)


def by_distortion(table: Mapping[str, T], distortion: str, what: str) -> T:
    """`table`'s entry for a model of `distortion` (`ModelConfig.distortion`); ArgumentError naming `what` and the
    known distortions for any other."""
    try:
        return table[distortion]
    except KeyError:
        raise ArgumentError(f"no {what} for distortion {distortion!r} (known: {', '.join(table)})") from None


def _schedule(distortion: str) -> Schedule:
    return by_distortion(DEFAULT_EFFORTS, distortion, "default effort")


def describe_default(distortion: str = "mse") -> str:
    """The default levels of a model of `distortion` in words, for help texts and reports, e.g. 'level 1 (a beam
    of 2) up to 5 stages, 3 (a beam of 8) from 6, 4 (a beam of 16) from 16'."""
    parts = [f"{level} (a beam of {EFFORT_BEAMS[level]}) {where}" for where, level in spans(_schedule(distortion))]
    return "level " + ", ".join(parts)


def check_effort(effort: int | None) -> int | None:
    """`effort` validated; None stays None (each quality's default, `default_effort`)."""
    if effort is None:
        return None
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort < len(EFFORT_BEAMS):
        raise ArgumentError(f"effort must be an integer 0..{len(EFFORT_BEAMS) - 1}, got {effort!r}")
    return effort


def effort_for(effort: int | None, stages: int, distortion: str = "mse") -> int:
    """The level a quality of `stages` stages of a model of `distortion` is searched at: `effort` when given
    (validated), else its default."""
    level = check_effort(effort)
    return default_effort(stages, distortion) if level is None else level


def describe(effort: int | None, distortion: str = "mse") -> str:
    """'effort N (a beam of B)' for a fixed level, or a model of `distortion`'s default levels for None."""
    if effort is None:
        return f"the default effort ({describe_default(distortion)})"
    return f"effort {effort} (a beam of {EFFORT_BEAMS[effort]})"
