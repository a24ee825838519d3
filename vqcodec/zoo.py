"""Model files: safetensors weights with the config and entropy prior inside, and the shipped models.

A model file holds the network's tensors, the prior's integer tables (a count prior's counts as
`prior.counts` and a context prior's code-to-group map `prior.groups`; a learned prior's tables
and integer context network under `prior.learned.*`), the per-stage rate weights the prior was
counted under (`prior.rate_weights`, float64; absent means greedy coding, all zero), and in its
metadata the `ModelConfig` as JSON and a fingerprint: a
SHA-256 over every tensor's name, dtype, shape and bytes plus the config. Loading
recomputes the fingerprint and refuses a file whose content does not match it, and
`.vqz` files name the fingerprint of the model that wrote them.

A model whose decoder was fine-tuned (`vqcodec.decoder_tuning`) keeps its ancestor's encoder,
codebooks and prior, so it reads every stream the ancestor wrote: its metadata lists the
ancestors' fingerprints under `decodes` (covered by its own fingerprint), and files naming an
ancestor decode with it. A model whose prior was counted again (`vqcodec fit-prior`) writes other streams
than its ancestors; it still reads theirs when it carries their prior too (`decodes_prior.*`, the same
tables as `prior.*`): the files of its own fingerprint decode with `prior`, those of its `decodes` with
that one. A model made from such a model keeping its prior (a decoder fine-tune of it, more stages) reads
its files with `prior` too: its metadata says how many of the nearest `decodes` coded with `prior`
(`decodes_own_prior`, covered by the fingerprint).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from safetensors import safe_open

from vqcodec.code_search import search_columns
from vqcodec.entropy import ContextPrior, FrequencyPrior
from vqcodec.entropy.learned import LearnedPrior
from vqcodec.errors import ModelError, VqcodecError
from vqcodec import inference
from vqcodec.model import VQVAE, ModelConfig
from vqcodec.registry import DECODES_KEY, format_lineage, parse_lineage, shipped_models
from vqcodec.safe_io import write_bytes_atomic
from vqcodec.text import printable

DEFAULT_MODEL = "default"
PRIOR_KEY = "prior.counts"
GROUPS_KEY = "prior.groups"
LEARNED_PREFIX = "prior.learned."
RATE_KEY = "prior.rate_weights"
DECODES_PRIOR = "decodes_"
"""Prefix of the tensors of the prior the models under `decodes` coded with, where it is not `prior`."""
OWN_PRIOR_KEY = "decodes_own_prior"
"""Metadata key: how many of the nearest `decodes` coded with the model's own `prior` (absent: none)."""
Prior = FrequencyPrior | ContextPrior | LearnedPrior
FORMAT_TAG = "vqcodec-model-1"
EMA_SUM = ".embed_sum"
"""Name ending of the codebooks' EMA sums: training state that the codebook and counts imply, left out of
model files written since short id 7 (`VectorQuantizer.restore_embed_sum` rebuilds it at load); older files
have it, and their fingerprint covers it."""


@dataclass
class CodecModel:
    """A network in eval mode, its entropy prior, the encoder's rate weights and its identity.

    `rate_weights` (one per stage) are the lambdas of rate-aware coding (`vqcodec.pricing`) that
    the prior's tables were counted under, and that `compress` therefore uses.
    """

    net: VQVAE
    prior: Prior
    fingerprint: bytes
    rate_weights: np.ndarray
    decodes: tuple[bytes, ...] = ()
    """Fingerprints of the models whose streams this one reads too (it is their decoder fine-tune, has stages
    added after theirs, or carries their prior as `decodes_prior`), nearest first."""
    decodes_prior: Prior | None = None
    """The prior the files of the models under `decodes` were coded with, where this model's own `prior` was
    counted again after theirs; None: they used `prior` too."""
    own_prior_decodes: int = 0
    """How many of `decodes`, the nearest, coded with `prior` (models between this one and the recount that
    gave `decodes_prior`); the others with `decodes_prior`."""
    arithmetic: str | None = None
    """"float32" or "bfloat16": the arithmetic of the inference forms and the code search; None: this machine's
    (`inference.precision`)."""

    @property
    def precision(self) -> str:
        """The arithmetic this model's inference forms and code search run in (`arithmetic`, else the machine's)."""
        return self.arithmetic or inference.precision()

    def reads(self, model_id: bytes) -> bool:
        """Whether data naming `model_id` (a fingerprint or its first bytes) is this model's or an ancestor's."""
        return any(f.startswith(model_id) for f in (self.fingerprint, *self.decodes))

    @property
    def lineage(self) -> tuple[tuple[bytes, ...], Prior | None, int]:
        """`save_model`'s `decodes`, `decodes_prior` and `own_prior_decodes` for a model that keeps this one's
        codebooks and prior and reads its files (a decoder fine-tune, a new encoder, another ladder, more
        stages): this model and its ancestors, the prior their files were coded with where it is not this
        one's, and how many of them (this one first) coded with this one's."""
        own = self.own_prior_decodes + 1 if self.decodes_prior is not None else 0
        return (self.fingerprint, *self.decodes), self.decodes_prior, own

    def prior_for(self, model_id: bytes) -> Prior:
        """The prior that decodes data naming `model_id` (this model's fingerprint, an ancestor's, or their
        first bytes): `decodes_prior` for an ancestor's coded before the recount, else `prior`."""
        mine = (self.fingerprint, *self.decodes[: self.own_prior_decodes])
        if self.decodes_prior is None or any(f.startswith(model_id) for f in mine):
            return self.prior
        return self.decodes_prior

    @cached_property
    def analysis(self) -> torch.nn.Module:
        """The encoder's faster inference form (`vqcodec.inference.fast_encoder`), built at the first encode."""
        return inference.fast_encoder(self.net.encoder, self.precision)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output (B, D, H/stride, W/stride) for 8-bit pixels (B, 3, H, W), uint8, through
        the fast analysis (what `VQVAE.embed` computes for pixels / 255)."""
        return self.analysis(pixels)

    @cached_property
    def search_columns(self) -> list[torch.Tensor]:
        """Every stage's bfloat16 score columns for the bfloat16 code search (`code_search.search_columns`)."""
        return search_columns(self.net.quantizer)

    @cached_property
    def synthesis(self) -> torch.nn.Module:
        """The decoder's faster inference form (`vqcodec.inference.fast_decoder`), built at the first decode."""
        return inference.fast_decoder(self.net.decoder, self.precision)

    @cached_property
    def top_synthesis(self) -> torch.nn.Module:
        """The top decoder's faster inference form (a model with `config.top_decoder_from`)."""
        return inference.fast_decoder(self.net.top_decoder, self.precision)

    def synthesis_for(self, stages: int) -> torch.nn.Module:
        """The fast synthesis of latents of `stages` stages (`VQVAE.decoder_for`)."""
        return self.top_synthesis if self.net.decoder_for(stages) is not self.net.decoder else self.synthesis

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] from index grids (B, S, h, w), through the fast synthesis."""
        return self.net.decode(indices, self.synthesis_for(indices.shape[1]))

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def name(self) -> str:
        return self.net.config.name


def fingerprint(tensors: dict[str, torch.Tensor], config_json: str, decodes: str = "",
                own_prior: int = 0) -> bytes:
    """SHA-256 over the config, the `decodes` lineage (when there is one), how many of them coded with the
    model's own prior (when any) and every tensor (sorted by name), as 32 bytes."""
    h = hashlib.sha256(config_json.encode())
    if decodes:
        h.update(f"|decodes|{decodes}|".encode())
    if own_prior:
        h.update(f"|{OWN_PRIOR_KEY}|{own_prior}|".encode())
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()


def _stored(net: VQVAE) -> dict[str, torch.Tensor]:
    """The network's tensors as a model file stores them: no EMA sums, and with `config.float16_weights` the
    encoder's and decoders' learned weights as float16 (on `default`'s 26 stages: PSNR within 0.001 dB of
    float32 at every quality tried, on the first 16 BSDS500 val images)."""
    half = {name for name, _ in net.named_parameters() if not name.startswith("quantizer.")}
    tensors = {}
    for key, value in net.state_dict().items():
        if key.endswith(EMA_SUM):
            continue
        value = value.detach().cpu().contiguous()
        tensors[key] = value.half() if net.config.float16_weights and key in half else value
    return tensors


def _state_tensors(net: VQVAE, prior: Prior, rate_weights: np.ndarray | None,
                   decodes_prior: Prior | None = None) -> dict[str, torch.Tensor]:
    tensors = _stored(net)
    if rate_weights is not None and np.any(rate_weights):
        tensors[RATE_KEY] = torch.from_numpy(np.asarray(rate_weights, dtype=np.float64).copy())
    tensors.update(_prior_tensors(prior))
    if decodes_prior is not None:
        tensors.update({DECODES_PRIOR + k: v for k, v in _prior_tensors(decodes_prior).items()})
    return tensors


def _prior_tensors(prior: Prior) -> dict[str, torch.Tensor]:
    """A prior's integer tables as a model file stores them (`prior.*`)."""
    if isinstance(prior, LearnedPrior):
        return {LEARNED_PREFIX + key: torch.from_numpy(np.ascontiguousarray(value).astype(np.int32))
                for key, value in prior.tensors().items()}
    tensors = {PRIOR_KEY: torch.from_numpy(prior.counts.astype(np.int32))}
    if isinstance(prior, ContextPrior):
        tensors[GROUPS_KEY] = torch.from_numpy(prior.groups.astype(np.int32))
    return tensors


def save_model(net: VQVAE, prior: Prior, path: str | os.PathLike[str],
               rate_weights: np.ndarray | None = None, decodes: tuple[bytes, ...] = (),
               decodes_prior: Prior | None = None, own_prior_decodes: int = 0) -> bytes:
    """Write a model file atomically; returns its fingerprint. `rate_weights` (one per stage, default
    all zero) are the rate-aware coding weights the prior was counted under; `decodes` the fingerprints
    of the models whose streams this one reads too (a decoder fine-tune of them, a model with stages added
    after theirs, or one whose prior was counted again, which then gives theirs as `decodes_prior`), of
    which the first `own_prior_decodes` coded with `prior` (`CodecModel.lineage` gives all three)."""
    for p in (prior, decodes_prior):
        if p is not None and (p.num_stages != net.config.num_stages or p.counts.shape[-1] != net.config.codebook_size):
            raise ValueError("prior shape does not match the model's stages and codebook size")
    if decodes_prior is not None and not decodes:
        raise ValueError("a prior for the models this one decodes needs those models (`decodes`)")
    if own_prior_decodes and (decodes_prior is None or not 0 < own_prior_decodes < len(decodes)):
        raise ValueError("models coded with this one's prior must leave some under `decodes_prior`")
    if rate_weights is not None:
        _check_rate_weights(np.asarray(rate_weights), net.config.num_stages)
    tensors = _state_tensors(net, prior, rate_weights, decodes_prior)
    config_json = net.config.to_json()
    lineage = format_lineage(decodes)
    digest = fingerprint(tensors, config_json, lineage, own_prior_decodes)
    meta = {"format": FORMAT_TAG, "config": config_json, "fingerprint": digest.hex()}
    if lineage:
        meta[DECODES_KEY] = lineage
    if own_prior_decodes:
        meta[OWN_PRIOR_KEY] = str(own_prior_decodes)
    write_bytes_atomic(path, save(tensors, metadata=meta), overwrite=True)
    return digest


def resolve(name_or_path: str | os.PathLike[str] | None) -> Path:
    """A shipped model's name (or None for the default) or a path, to a file path."""
    key = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    shipped = shipped_models()
    if key in shipped:
        return shipped[key]
    path = Path(key)
    if path.is_file():
        return path
    names = ", ".join(sorted(shipped)) or "none"
    raise ModelError(f"no model named or at '{key}' (shipped models: {names})")


_CACHE: dict[tuple[str, int, int], CodecModel] = {}


def load_model(name_or_path: str | os.PathLike[str] | None = None) -> CodecModel:
    """Load a shipped model by name, or a model file by path, checking its fingerprint.

    Results are cached per file (path, size and modification time), so repeated calls are cheap.
    """
    path = resolve(name_or_path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = _load(path)
    return _CACHE[key]


def _load(path: Path) -> CodecModel:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable safetensors model file ({exc})") from None
    if meta.get("format") != FORMAT_TAG or "config" not in meta or "fingerprint" not in meta:
        raise ModelError(f"{path}: not a vqcodec model file (metadata missing)")
    try:
        config = ModelConfig.from_json(meta["config"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{path}: bad model config ({exc})") from None
    lineage = meta.get(DECODES_KEY, "")
    try:
        decodes = parse_lineage(lineage)
    except ValueError:
        raise ModelError(f"{path}: bad '{DECODES_KEY}' metadata (not hex fingerprints)") from None
    own = meta.get(OWN_PRIOR_KEY, "0")
    if not (own.isascii() and own.isdigit()) or int(own) >= max(len(decodes), 1):
        raise ModelError(f"{path}: bad '{OWN_PRIOR_KEY}' metadata ({own[:20]!r})")
    digest = fingerprint(tensors, meta["config"], lineage, int(own))
    if digest.hex() != meta["fingerprint"]:
        raise ModelError(f"{path}: content does not match its fingerprint (file altered or damaged)")
    try:
        rate_weights = _read_rate_weights(tensors, config.num_stages)
        prior = _read_prior(tensors)
        decodes_prior = _read_decodes_prior(tensors, prior, bool(decodes))
    except (ValueError, KeyError) as exc:
        raise ModelError(f"{path}: bad entropy prior ({exc})") from None
    if int(own) and decodes_prior is None:
        raise ModelError(f"{path}: '{OWN_PRIOR_KEY}' without the prior of the models it decodes")
    net = VQVAE(config)
    try:
        keys = net.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the config ({str(exc).splitlines()[0]})") from None
    missing = [k for k in keys.missing_keys if not k.endswith(EMA_SUM)]
    if missing or keys.unexpected_keys:
        wrong = ", ".join([f"missing {k}" for k in missing] + [f"unexpected {k}" for k in keys.unexpected_keys])
        raise ModelError(f"{path}: weights do not fit the config ({wrong[:200]})")
    for i, stage in enumerate(net.quantizer.stages):
        if f"quantizer.stages.{i}{EMA_SUM}" in keys.missing_keys:
            stage.restore_embed_sum()
    net.eval()
    # Channels-last convolutions run the encoder about 20% faster on CPU; the decoder keeps the
    # default layout, whose results are checked to be identical across thread counts.
    net.encoder.to(memory_format=torch.channels_last)
    return CodecModel(net=net, prior=prior, fingerprint=digest, rate_weights=rate_weights, decodes=decodes,
                      decodes_prior=decodes_prior, own_prior_decodes=int(own))


def _read_rate_weights(tensors: dict[str, torch.Tensor], num_stages: int) -> np.ndarray:
    """Take the rate weights out of a model file's tensors (all zero when it has none)."""
    if RATE_KEY not in tensors:
        return np.zeros(num_stages)
    return _check_rate_weights(tensors.pop(RATE_KEY).numpy().astype(np.float64), num_stages)


def _check_rate_weights(weights: np.ndarray, num_stages: int) -> np.ndarray:
    """`weights` when they are one finite value >= 0 per stage, else ValueError."""
    if weights.shape != (num_stages,) or not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise ValueError("rate weights must be one finite value >= 0 per stage")
    return weights


def _read_prior(tensors: dict[str, torch.Tensor]) -> Prior:
    """Take the prior's tensors out of a model file's tensors and build the prior they describe."""
    learned = {k[len(LEARNED_PREFIX):]: tensors.pop(k).numpy().astype(np.int64)
               for k in [k for k in tensors if k.startswith(LEARNED_PREFIX)]}
    if learned:
        return LearnedPrior.from_tensors(learned)
    if PRIOR_KEY not in tensors:
        raise ValueError("model file has no entropy prior")
    counts = tensors.pop(PRIOR_KEY).numpy().astype(np.int64)
    if GROUPS_KEY in tensors:
        return ContextPrior(counts, tensors.pop(GROUPS_KEY).numpy())
    return FrequencyPrior(counts)


def _read_decodes_prior(tensors: dict[str, torch.Tensor], prior: Prior, has_decodes: bool) -> Prior | None:
    """Take the prior of the models under `decodes` out of a model file's tensors (None when it has none)."""
    keys = [k for k in tensors if k.startswith(DECODES_PRIOR)]
    if not keys:
        return None
    if not has_decodes:
        raise ValueError("a prior for the models it decodes, but no `decodes` list")
    theirs = _read_prior({k[len(DECODES_PRIOR):]: tensors.pop(k) for k in keys})
    if theirs.num_stages != prior.num_stages or theirs.counts.shape[-1] != prior.counts.shape[-1]:
        raise ValueError("the prior of the models it decodes has other stages or codes than its own")
    return theirs


ModelLike = CodecModel | str | os.PathLike[str] | None
"""A loaded model, a shipped model's name, a model file path, or None for the default model."""


def as_model(model: ModelLike) -> CodecModel:
    """`model` itself when already loaded, else `load_model(model)`."""
    return model if isinstance(model, CodecModel) else load_model(model)


def identify(name: str, fingerprint: bytes, model: ModelLike, made: str,
             error: type[VqcodecError]) -> CodecModel:
    """The model that made some data: `model` if given, else the installed model called `name`.

    `fingerprint` is (a prefix of) the maker's fingerprint; a model that does not match
    it is refused with `error`, since indices mean something only to the model that chose them.
    `made` begins the messages, e.g. "file was written".
    """
    if model is None:
        if name not in shipped_models():
            raise error(f"{made} by model '{printable(name)}', which is not installed (pass the model file with --model)")
        m = load_model(name)
    else:
        m = as_model(model)
    if not m.reads(fingerprint):
        raise error(f"{made} by model '{printable(name)}' ({fingerprint.hex()}), "
                    f"not by the given model '{printable(m.name)}' ({m.fingerprint[:len(fingerprint)].hex()})")
    return m
