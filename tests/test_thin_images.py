"""Cost follows pixels: thin images (a row, a column, a strip) are coded in as few network calls as their cells need."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from vqcodec import codec
from vqcodec.zoo import CodecModel


@pytest.mark.parametrize("grid", [(1, 1500), (1500, 1), (1, 1), (2, 1500), (96, 64), (1, 40000), (300, 300),
                                  (400, 50), (127, 10000), (130, 100)])
def test_tiles_cover_every_cell_once_with_bounded_area(grid: tuple[int, int]) -> None:
    tile = codec.TILE_CELLS
    owned = np.zeros(grid, dtype=np.int64)
    tiles = codec._tiles(*grid, tile)
    for rows, cols, hrows, hcols in tiles:
        owned[rows, cols] += 1
        assert (rows.stop - rows.start) * (cols.stop - cols.start) <= tile * tile
        assert hrows.start <= rows.start and hrows.stop >= rows.stop
        assert hcols.start <= cols.start and hcols.stop >= cols.stop
    assert (owned == 1).all()
    if min(grid) < tile:  # a thin grid: tiles span its short side, so their count follows its cells
        assert len(tiles) <= math.ceil(grid[0] * grid[1] / (tile * tile)) + 1


class Counting:
    """Wraps a network method and counts its calls."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("size", [(12000, 1), (1, 12000), (12000, 8), (8, 12000)])
def test_a_thin_image_is_one_network_call_each_way(default_model: CodecModel, size: tuple[int, int],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    embed, decode = Counting(default_model.embed), Counting(default_model.net.decode)
    monkeypatch.setattr(default_model, "embed", embed)
    monkeypatch.setattr(default_model.net, "decode", decode)
    rgb = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = codec.decompress(codec.compress(Image.fromarray(rgb), default_model), default_model)
    assert out.size == size
    assert (embed.calls, decode.calls) == (1, 1)
