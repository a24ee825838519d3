"""A model's quality ladder: what each `compress` quality does, and giving a model reduced qualities.

The ladder itself is `codec.quality_levels`: the reduced qualities of the model's config (the image
shrunk before coding, for the lowest rates), then the full-size ones from `full_from` stages, then the
lighter-priced top. `relabel` changes the first two parts of a trained model without touching its
weights, so the new model reads every file the old one wrote (it lists the old one under `decodes`).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from vqcodec import codec
from vqcodec.errors import ArgumentError
from vqcodec.model import ModelConfig
from vqcodec.zoo import CodecModel


def parse_reduced(text: str) -> tuple[tuple[float, int], ...]:
    """`reduced_qualities` from "F:K,F:K" (shrink factor and stages per quality, lowest first); "" for none."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        factor, sep, stages = item.partition(":")
        try:
            if not sep:
                raise ValueError
            out.append((float(factor), int(stages)))
        except ValueError:
            raise ArgumentError(f"reduced qualities are FACTOR:STAGES pairs separated by commas "
                                f"(e.g. 2:4,1.5:4), got {item!r}") from None
    return tuple(out)


def relabel(model: CodecModel, reduced: tuple[tuple[float, int], ...], full_from: int) -> ModelConfig:
    """`model`'s config with these reduced qualities and full-size qualities from `full_from` stages.

    The default quality follows its level (the same stages, scale and size) to its new number; a
    ladder without that level is refused. Every reduced quality must code fewer bits per pixel than
    the next one in practice; that is the caller's measurement (`python -m vqcodec.bench.reduced`).
    """
    old = codec.quality_levels(model)[codec.default_quality(model) - 1]
    try:
        config = replace(model.config, reduced_qualities=reduced, full_from=full_from, default_quality=0)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    levels = codec.ladder(config, bool(np.any(model.rate_weights)))
    if old not in levels:
        raise ArgumentError(f"the new qualities leave out the default one ({old.stages} stages at full size): "
                            f"keep full-size qualities from {old.stages} stages or fewer")
    return replace(config, default_quality=levels.index(old) + 1)



def with_config(model: CodecModel, config: ModelConfig) -> CodecModel:
    """`model` under another config of the same weights (a new ladder): its network is shared, not copied, and
    `model` itself is left as it was (a loaded model may be cached)."""
    net = copy.copy(model.net)
    net.config = config
    return replace(model, net=net)


def describe(model: CodecModel) -> str:
    """The ladder in one line, e.g. "qualities 1-2: image shrunk by 2, 1.5 (4, 4 stages); 3-26: that many
    stages; 27-28: all 26 stages, bits priced less"."""
    levels = codec.quality_levels(model)
    reduced = [lv for lv in levels if lv.shrink != 1]
    full = [lv for lv in levels if lv.shrink == 1 and lv.scale == 1]
    top = len(levels) - len(reduced) - len(full)
    parts = []
    if reduced:
        parts.append(f"{_span(1, len(reduced))}: image shrunk by {', '.join(f'{lv.shrink:g}' for lv in reduced)} "
                     f"({', '.join(str(lv.stages) for lv in reduced)} stages)")
    first = len(reduced) + 1
    parts.append(f"{_span(first, first + len(full) - 1)}: "
                 + ("that many stages" if full[0].stages == first else f"{full[0].stages}-{full[-1].stages} stages"))
    if top:
        parts.append(f"{_span(len(levels) - top + 1, len(levels))}: all {model.config.num_stages} stages, bits priced less")
    return "qualities " + "; ".join(parts)


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"
