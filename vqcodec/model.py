"""The VQ-VAE: a convolutional encoder, a residual vector quantizer and a mirrored decoder.

The encoder is the seed's stack of strided convolutions with BatchNorm and ReLU,
followed by residual blocks; the decoder mirrors it with transposed convolutions.
Beside each stack runs a linear lapped transform (one strided convolution whose
kernel spans two cells), initialised by the trainer to the principal components
of image blocks. The convolutional stacks start at zero output and learn what the
linear transform misses; this makes the untrained model a good transform coder
and lets a short CPU training reach what the plain stacks needed far longer for.
`ModelConfig` describes a model completely: it is what a model file stores beside
the weights, and all a reader needs to rebuild the network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.quantizer import Penalty, QuantizerOutput, ResidualVQ

DISTORTIONS = ("mse", "ms-ssim")
"""The measures a model's decoder can be trained for (`ModelConfig.distortion`)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes a model; stored as JSON in the model file's metadata."""

    name: str = "vqcodec"
    channels: tuple[int, ...] = (64, 96, 128)
    decoder_channels: tuple[int, ...] = ()
    """The decoder's widths in the same order as `channels` (finest scale first); empty: `channels`, the
    mirror. A narrower decoder decodes faster (`vqcodec.narrowing` starts one from a wider model's)."""
    res_blocks: int = 2
    latent_dim: int = 64
    codebook_size: int = 512
    num_stages: int = 8
    beta: float = 0.25
    ema_decay: float = 0.99
    description: str = ""
    default_quality: int = 0
    """The quality `compress` uses when none is given; 0: the middle one (`codec.default_quality`). A model
    extended with more stages (`vqcodec.stage_extension`) keeps the default of the model it grew from."""
    top_decoder_from: int = 0
    """The stage count from which a second decoder (`VQVAE.top_decoder`, `top_decoder_widths`) decodes; 0: one
    decoder for every stage count. Latents of many stages need another synthesis than coarse ones: one decoder
    trained on both trades the low qualities for the top (`vqcodec.decoder_tuning`)."""
    top_decoder_channels: tuple[int, ...] = ()
    """The second decoder's widths, finest scale first; empty: `decoder_widths`. The top qualities carry
    detail a narrow decoder cannot reproduce, while the low ones, the default among them, keep the fast one
    (`vqcodec.widening` starts a wider one from the narrow one's function)."""
    float16_weights: bool = False
    """The model file stores the encoder's and decoders' weights as float16 (the loader computes in float32).
    Halves the network's size; codebooks, BatchNorm statistics and the prior keep their exact types."""
    reduced_qualities: tuple[tuple[float, int], ...] = ()
    """The lowest qualities, coded at a reduced size: (factor by which width and height shrink, stages) each,
    lowest first (`codec.quality_levels`). Below about 0.15 bpp a smaller image with more stages gives a
    better picture for its size than the full-size image with fewer."""
    full_from: int = 1
    """The fewest stages a full-size quality keeps: with reduced qualities, the full-size ones of fewer
    stages give a worse picture than a reduced one of the same size, and are left out."""
    full_res_channels: int = 0
    """Width of each decoder's full-resolution stage (`Decoder.full_res`), 0 for none. The mirrored decoder's
    last layer makes every pixel a linear function of four half-resolution feature vectors; its errors gather
    on the code cells' borders. The stage is nonlinear at full resolution, and adds its output to the image."""
    distortion: str = "mse"
    """What the decoder was trained to minimise, one of `DISTORTIONS`: "mse", or "ms-ssim" for a decoder
    fine-tuned for MS-SSIM (`perceptual`). `compress` refines the latents for the same measure
    (`vqcodec.latent_refinement`)."""

    @property
    def stride(self) -> int:
        """Downsampling factor between image pixels and grid cells."""
        return 2 ** len(self.channels)

    @property
    def decoder_widths(self) -> tuple[int, ...]:
        """The decoder's channels per scale, finest first."""
        return self.decoder_channels or self.channels

    @property
    def top_decoder_widths(self) -> tuple[int, ...]:
        """The second decoder's channels per scale, finest first."""
        return self.top_decoder_channels or self.decoder_widths

    def __post_init__(self) -> None:
        if self.decoder_channels and len(self.decoder_channels) != len(self.channels):
            raise ValueError(f"decoder_channels needs one width per scale ({len(self.channels)}), "
                             f"got {len(self.decoder_channels)}")
        if self.top_decoder_channels and len(self.top_decoder_channels) != len(self.channels):
            raise ValueError(f"top_decoder_channels needs one width per scale ({len(self.channels)}), "
                             f"got {len(self.top_decoder_channels)}")
        if any(c < 1 for c in (*self.channels, *self.decoder_channels, *self.top_decoder_channels)):
            raise ValueError(f"channel widths must be positive, got channels={self.channels}, "
                             f"decoder_channels={self.decoder_channels}, "
                             f"top_decoder_channels={self.top_decoder_channels}")
        if self.top_decoder_channels and not self.top_decoder_from:
            raise ValueError("top_decoder_channels needs a second decoder (top_decoder_from)")
        top = len(self.reduced_qualities) + self.num_stages - self.full_from + 1
        if not 0 <= self.default_quality <= top:
            raise ValueError(f"default_quality must be 0 (the middle) or a quality 1..{top}, "
                             f"got {self.default_quality}")
        if any(not (isinstance(f, (int, float)) and f > 1) or not 1 <= k <= self.num_stages
               for f, k in self.reduced_qualities):
            raise ValueError(f"reduced_qualities need a shrink factor above 1 and a stage count 1..{self.num_stages} "
                             f"each, got {self.reduced_qualities}")
        if not 1 <= self.full_from <= self.num_stages:
            raise ValueError(f"full_from must be a stage count 1..{self.num_stages}, got {self.full_from}")
        if self.full_res_channels < 0:
            raise ValueError(f"full_res_channels must be 0 (no full-resolution stage) or more, "
                             f"got {self.full_res_channels}")
        if self.distortion not in DISTORTIONS:
            raise ValueError(f"distortion must be one of {', '.join(DISTORTIONS)}, got {self.distortion!r}")
        if self.top_decoder_from and not 2 <= self.top_decoder_from <= self.num_stages:
            raise ValueError(f"top_decoder_from must be 0 (one decoder) or a stage count 2..{self.num_stages}, "
                             f"got {self.top_decoder_from}")

    def to_json(self) -> str:
        """The config as JSON; a mirrored decoder leaves `decoder_channels` out and the middle default quality
        `default_quality`, one decoder `top_decoder_from`, and full-size qualities alone `reduced_qualities` and
        `full_from`, a top decoder of the first one's widths `top_decoder_channels`, float32 weights
        `float16_weights`, no full-resolution stage `full_res_channels`, and a decoder for MSE `distortion`, as
        files written before those fields existed have them."""
        fields = asdict(self)
        if not self.decoder_channels:
            del fields["decoder_channels"]
        for optional in ("default_quality", "top_decoder_from", "reduced_qualities", "top_decoder_channels",
                         "float16_weights", "full_res_channels"):
            if not fields[optional]:
                del fields[optional]
        if fields["full_from"] == 1:
            del fields["full_from"]
        if fields["distortion"] == "mse":
            del fields["distortion"]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        raw = json.loads(text)
        raw["channels"] = tuple(raw["channels"])
        raw["decoder_channels"] = tuple(raw.get("decoder_channels", ()))
        raw["top_decoder_channels"] = tuple(raw.get("top_decoder_channels", ()))
        raw["reduced_qualities"] = tuple((float(f), int(k)) for f, k in raw.get("reduced_qualities", ()))
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**raw)


class ResBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the input, then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _lapped(stride: int) -> dict[str, int]:
    """Kernel and padding of a strided convolution whose kernel spans two cells, centred on its own cell."""
    return {"kernel_size": 2 * stride, "stride": stride, "padding": stride // 2}


class Encoder(nn.Module):
    """Linear lapped transform plus strided 4x4 convolutions (each halving the size) with BatchNorm and ReLU,
    then residual blocks; the convolutional path's last layer starts at zero."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch in config.channels:
            layers += [
                nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = out_ch
        layers += [ResBlock(in_ch) for _ in range(config.res_blocks)]
        layers.append(_zeroed(nn.Conv2d(in_ch, config.latent_dim, 1)))
        self.net = nn.Sequential(*layers)
        self.linear = nn.Conv2d(3, config.latent_dim, **_lapped(config.stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.net(x)


class Decoder(nn.Module):
    """The encoder mirrored: a linear lapped synthesis plus residual blocks and 4x4 transposed convolutions
    doubling the size; the convolutional path's last layer starts at zero. With `config.full_res_channels`
    a full-resolution stage (`full_res`) reads the last half-resolution features too: a transposed convolution
    to that many channels and ReLU, a 3x3 convolution and ReLU, and a 3x3 convolution to the image that starts
    at zero, so a decoder given the stage computes what it did without it until training moves it."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        chans = list(reversed(config.decoder_widths))
        layers: list[nn.Module] = [
            nn.Conv2d(config.latent_dim, chans[0], 1, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(inplace=True),
        ]
        layers += [ResBlock(chans[0]) for _ in range(config.res_blocks)]
        for in_ch, out_ch in zip(chans, chans[1:]):
            layers += [
                nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
            ]
        layers.append(_zeroed(nn.ConvTranspose2d(chans[-1], 3, 4, stride=2, padding=1)))
        self.net = nn.Sequential(*layers)
        self.linear = nn.ConvTranspose2d(config.latent_dim, 3, **_lapped(config.stride))
        width = config.full_res_channels
        self.full_res = nn.Sequential(
            nn.ConvTranspose2d(chans[-1], width, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            _zeroed(nn.Conv2d(width, 3, 3, padding=1)),
        ) if width else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.full_res is None:
            return self.linear(z) + self.net(z)
        features = self.net[:-1](z)
        return self.linear(z) + self.net[-1](features) + self.full_res(features)


def _zeroed(layer: nn.Conv2d | nn.ConvTranspose2d) -> nn.Module:
    """A layer with zero weights and bias: its path adds nothing until training moves it."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _to_rows(z: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) latents to (B*H*W, D) rows for the quantizer."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def _from_rows(rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    b, d, h, w = shape
    return rows.reshape(b, h, w, d).permute(0, 3, 1, 2)


class VQVAE(nn.Module):
    """Encoder, residual VQ and decoder. Images are float tensors in [0, 1], shape (B, 3, H, W).

    H and W must be multiples of `config.stride`; `vqcodec.codec` pads and crops around that.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVQ(
            config.num_stages, config.codebook_size, config.latent_dim,
            beta=config.beta, decay=config.ema_decay,
        )
        self.decoder = Decoder(config)
        if config.top_decoder_from:
            self.top_decoder = Decoder(replace(config, decoder_channels=config.top_decoder_widths))

    def decoder_for(self, stages: int) -> Decoder:
        """The decoder of latents quantized with `stages` stages: `top_decoder` from `config.top_decoder_from`."""
        if self.config.top_decoder_from and stages >= self.config.top_decoder_from:
            return self.top_decoder
        return self.decoder

    @torch.no_grad()
    def set_linear_transform(self, mean: torch.Tensor, basis: torch.Tensor) -> None:
        """Make the linear paths an orthonormal block transform: z = basis . (block - mean), block = basis^T z + mean.

        `mean` (3,) is a colour in encoder input units (pixels - 0.5); `basis` (latent_dim, 3, stride, stride)
        are orthonormal block patterns, placed at the centre of the lapped kernels.
        """
        s = self.config.stride
        lo = s // 2
        enc, dec = self.encoder.linear, self.decoder.linear
        enc.weight.zero_()
        enc.weight[:, :, lo : lo + s, lo : lo + s] = basis
        enc.bias.copy_(-(basis * mean[None, :, None, None]).sum(dim=(1, 2, 3)))
        dec.weight.zero_()
        dec.weight[:, :, lo : lo + s, lo : lo + s] = basis
        dec.bias.copy_(mean)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output (B, D, H/stride, W/stride)."""
        return self.encoder(x - 0.5)

    def reconstruct(self, z: torch.Tensor, stages: int = 1) -> torch.Tensor:
        """Decoder output in image units (not clamped, so training sees the true error) for latents quantized
        with `stages` stages (which picks the decoder, `decoder_for`); float32 also under autocast."""
        return self.decoder_for(stages)(z).float() + 0.5

    def forward(self, x: torch.Tensor, num_stages: int | None = None,
                penalty: Penalty | None = None) -> tuple[torch.Tensor, QuantizerOutput]:
        """Reconstruction through the first `num_stages` quantizer stages, and the quantizer's output.

        `num_stages=0` skips quantization (the autoencoder pretraining of the recipe). `penalty` prices the
        codes (`ResidualVQ.forward`).
        """
        z = self.embed(x)
        if num_stages == 0:
            empty = torch.zeros(0, dtype=torch.long, device=x.device)
            return self.reconstruct(z), QuantizerOutput(z, empty, z.new_zeros(()))
        q = self.quantize(z, num_stages, penalty)
        stages = self.config.num_stages if num_stages is None else num_stages
        return self.reconstruct(q.quantized, stages), q

    def quantize(self, z: torch.Tensor, num_stages: int | None = None,
                 penalty: Penalty | None = None) -> QuantizerOutput:
        """The quantizer's output for latents `z` (B, D, h, w), its quantized latents (straight-through) in
        `z`'s shape: codes are picked, and in training updated, in float32 also under autocast."""
        with torch.autocast(z.device.type, enabled=False):
            out = self.quantizer(_to_rows(z.float()), num_stages, penalty)
        return QuantizerOutput(_from_rows(out.quantized, z.shape), out.indices, out.commitment_loss)

    def encode(self, x: torch.Tensor, num_stages: int | None = None,
               penalty: Penalty | None = None) -> torch.Tensor:
        """Index grids (B, S, H/stride, W/stride) as int64; rate-aware when `penalty` prices the codes."""
        z = self.embed(x)
        b, _, h, w = z.shape
        idx = self.quantizer.encode(_to_rows(z), num_stages, penalty)
        return idx.reshape(idx.shape[0], b, h, w).transpose(0, 1)

    def decode(self, indices: torch.Tensor, synthesis: nn.Module | None = None) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] from index grids (B, S, h, w); S may be any prefix of stages.

        `synthesis` replaces the decoder of S stages (`decoder_for`) by an equivalent inference form
        (`vqcodec.inference`).
        """
        zq = self.quantizer.decode(indices.transpose(0, 1)).permute(0, 3, 1, 2)
        out = self.reconstruct(zq, indices.shape[1]) if synthesis is None else synthesis(zq) + 0.5
        return out.clamp(0.0, 1.0)
