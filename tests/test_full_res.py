"""The decoder's full-resolution stage (`ModelConfig.full_res_channels`): it starts adding nothing, it is part
of the stored config only when present, and it changes what the decoder can compute once trained."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from tests.conftest import TINY
from vqcodec.model import VQVAE, Decoder, ModelConfig
from vqcodec.narrowing import narrow_decoder
from vqcodec.widening import widen_decoder

STAGED = replace(TINY, full_res_channels=3)


def test_the_stage_is_stored_in_the_config_only_when_present() -> None:
    assert "full_res_channels" not in json.loads(TINY.to_json())
    assert json.loads(STAGED.to_json())["full_res_channels"] == 3
    assert ModelConfig.from_json(STAGED.to_json()) == STAGED
    with pytest.raises(ValueError, match="full_res_channels must be 0"):
        replace(TINY, full_res_channels=-1)


def test_a_decoder_given_the_stage_computes_what_it_did_until_trained() -> None:
    torch.manual_seed(0)
    plain = VQVAE(TINY).eval()
    staged = VQVAE(STAGED).eval()
    keys = staged.load_state_dict(plain.state_dict(), strict=False)
    assert keys.missing_keys and all(k.startswith("decoder.full_res.") for k in keys.missing_keys)
    z = torch.randn(2, TINY.latent_dim, 5, 7)
    with torch.no_grad():
        assert torch.equal(staged.decoder(z), plain.decoder(z))
        torch.nn.init.normal_(staged.decoder.full_res[-1].weight, std=0.1)
        moved = staged.decoder(z)
    assert moved.shape == plain.decoder(z).shape and not torch.allclose(moved, plain.decoder(z))


def test_narrowing_and_widening_refuse_the_stage() -> None:
    staged = Decoder(STAGED)
    with pytest.raises(ValueError, match="full-resolution stage"):
        widen_decoder(staged, replace(STAGED, decoder_channels=(12, 16)))
    with pytest.raises(ValueError, match="full-resolution stage"):
        narrow_decoder(staged, replace(STAGED, decoder_channels=(4, 8)), torch.randn(1, TINY.latent_dim, 4, 4))
