"""`vqcodec train`: the CLI face of `vqcodec.train`.

On a terminal, progress is a bar on stderr; when stdout is not a terminal (`> log`, nohup, CI,
a job scheduler) it is also written there as plain lines, so the log shows the run is alive.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vqcodec.effort import EFFORT_BEAMS, describe, describe_default

from .console import PlainLines, console, err_console

if TYPE_CHECKING:
    from vqcodec.train import TrainConfig

PLAIN_LINES_PER_RUN = 100
"""Step lines a plain log gets over a run (plus phases, validations and the last step)."""
def _step_info(m: dict[str, Any]) -> str:
    if "snr" in m:
        info = f"loss {m['loss']:.3g} latent SNR {m['snr']:.2f} dB"
    else:
        info = f"loss {m['loss']:.4f} psnr {m['psnr']:.2f}"
    if "perplexity" in m:
        info += f" ppl {m['perplexity']:.0f} used {m['codes_in_use']:.0%} q{m['stages']}"
    if "quality" in m:
        info += f" q{m['quality']}"
    if "val_bpp" in m:
        info += f" | val {m['val_psnr'][-1]:.2f} dB @ {m['val_bpp'][-1]:.3f} bpp"
    elif "val_psnr" in m:
        info += f" | val q1-q{len(m['val_psnr'])} {m['val_psnr'][0]:.2f}-{m['val_psnr'][-1]:.2f} dB"
        if "val_msssim" in m:
            info += f", MS-SSIM {m['val_msssim'][0]:.4f}-{m['val_msssim'][-1]:.4f}"
        if "val_msssim_phases" in m:
            info += f" ({m['val_msssim_phases'][0]:.4f}-{m['val_msssim_phases'][-1]:.4f} over phases)"
    return info


def _phase_text(m: dict[str, Any], cfg: TrainConfig) -> str:
    """What a phase does, in a few words."""
    phase, step = m["phase"], m["step"]
    if phase == "pretrain":
        return f"steps {step + 1}-{cfg.pretrain_steps}, the autoencoder without quantization ({cfg.loss} loss)"
    if phase == "kmeans":
        return "initialising the codebooks by k-means on encoder outputs"
    if phase == "train":
        return f"steps {step + 1}-{cfg.steps}, quantized, with quantizer dropout ({cfg.loss} loss)"
    if phase == "coding":
        return (f"coding the {m['images']} training images whole at {cfg.cached_codes} qualities each, "
                f"{describe(cfg.effort, cfg.loss)}")
    if phase == "decoder":
        which = (f"a second decoder for qualities {cfg.top_decoder_from} and up" if cfg.top_decoder_from
                 else "the decoder alone")
        source = ("on windows of those codes" if cfg.cached_codes
                  else f"on the codes compress writes at a random quality, {describe(cfg.effort, cfg.loss)}")
        return (f"steps {step + 1}-{cfg.steps}, {which} ({cfg.loss} loss) {source}; "
                f"encoder, codebooks and prior stay {cfg.init}'s")
    if phase == "encoder":
        widths = ",".join(map(str, cfg.model.channels))
        return (f"steps {step + 1}-{cfg.steps}, an encoder of widths {widths} learning {cfg.init}'s latents; "
                f"codebooks, prior and decoders stay {cfg.init}'s")
    views = m["views"]
    why = (f"auto for a {cfg.steps}-step run" if m["views_chosen"] == "auto" else "--prior-views") + \
        "; --prior-views 1, 2, 8 or 32 trades time for a better prior"
    rounds = m.get("rounds", 1)
    weights = ",".join(f"{w:g}" for w in m.get("rate_weights", ()))
    rate = f", {rounds} rounds of rate-aware coding at weights {weights}" if weights else ""
    return (f"fitting the entropy prior on {m['images']} training images, "
            f"{views} view{'s' if views != 1 else ''} per image ({why}){rate}")


class PlainProgress:
    """Training progress as plain lines with the elapsed time: every phase, the first and last step,
    validations, and otherwise about `PLAIN_LINES_PER_RUN` step lines a run (at least one a minute);
    during the prior fit, its images likewise."""

    def __init__(self, cfg: TrainConfig, out: TextIO) -> None:
        self.cfg, self.out = cfg, out
        self.lines = PlainLines(PLAIN_LINES_PER_RUN)

    def _print(self, line: str) -> None:
        self.lines.printed()
        print(f"{line} elapsed {self.lines.elapsed()}", file=self.out, flush=True)

    def __call__(self, m: dict[str, Any]) -> None:
        late = self.lines.late()
        event = m.get("event")
        if event == "phase":
            self._print(f"phase {m['phase']}: {_phase_text(m, self.cfg)}")
        elif event in ("prior", "coding"):
            i, n = m["image"], m["images"]
            if late or i == n or i % max(1, n // 20) == 0:
                self._print(f"{event} image {i}/{n}")
        elif event is None:
            step = m["step"]
            if self.lines.due(step, self.cfg.steps) or "val_psnr" in m:
                phase = ("decoder" if self.cfg.decoder_only else "encoder" if self.cfg.encoder_only
                         else "train" if m["stages"] else "pretrain")
                self._print(f"step {step}/{self.cfg.steps} phase {phase} {_step_info(m)}")


def _widths(text: str, option: str) -> tuple[int, ...]:
    """--decoder-channels or --encoder-channels as a tuple of ints (empty text: none)."""
    try:
        return tuple(int(w) for w in text.split(",")) if text.strip() else ()
    except ValueError:
        raise ValueError(f"{option} takes comma-separated whole numbers, got {text!r}") from None


def train(
    data: Annotated[Path, typer.Option("--data", help="Folder of training photos (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.safetensors).")] = Path("model.safetensors"),
    val: Annotated[Optional[Path], typer.Option("--val", help="Folder of validation photos: PSNR and real bpp every --val-every steps.")] = None,
    steps: Annotated[int, typer.Option(help="Total optimisation steps, pretraining included.")] = 2000,
    pretrain_steps: Annotated[Optional[int], typer.Option(help="Steps of autoencoder pretraining before quantization; default: a tenth of --steps.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Crops per step (per process under torchrun).")] = 8,
    crop: Annotated[int, typer.Option(help="Side of the square training crops, in pixels.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (warm-up, then cosine decay).")] = 5e-4,
    name: Annotated[str, typer.Option(help="Model name recorded in the file and in every .vqz it writes.")] = "custom",
    stages: Annotated[int, typer.Option(help="Residual quantizer stages = number of qualities.")] = 8,
    codebook_size: Annotated[int, typer.Option(help="Codes per stage (K).")] = 512,
    latent_dim: Annotated[int, typer.Option(help="Dimension of each code (D).")] = 64,
    val_every: Annotated[int, typer.Option(help="Validate every N steps.")] = 250,
    checkpoint_every: Annotated[int, typer.Option(help="Write a checkpoint every N steps.")] = 100,
    resume: Annotated[Optional[Path], typer.Option(help="Continue from this checkpoint (written beside --out as .ckpt).")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Fine-tune: start from this model file (a shipped name or a path) instead of the transform and codebook initialisations; pretraining then defaults to 0 steps.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of every random choice in the run.")] = 0,
    prior_views: Annotated[Optional[int], typer.Option(
        help="Views of each training image the entropy prior is counted over: 1 (the image), 2 (and its mirror), "
             "8 or 32 (grid offsets in steps of 4 or 2 pixels, each mirrored; 128 for 1 pixel). Cost grows with "
             "views. Default: the most, up to 32, whose pixels do not exceed those the run trains on "
             "(steps x batch size x crop^2); the log says which.", show_default=False)] = None,
    rate_weights: Annotated[str, typer.Option(
        help="Rate-aware coding: stages 2..S choose codes by squared latent error + weight x bits in context "
             "(one weight for all, or comma-separated, one per stage); the prior is counted on those codes and "
             "compress uses the weights (stored in the file). Empty: nearest code. With --decoder-only: the "
             "weights the new model codes with (empty: --init's); the prior stays --init's.")] = "",
    prior_rounds: Annotated[Optional[int], typer.Option(
        help="Prior fits: the first on greedy codes, each further one on the codes rate-aware coding picks under "
             "the previous fit. Default: 1 without --rate-weights, else 4.", show_default=False)] = None,
    decoder_only: Annotated[bool, typer.Option(
        "--decoder-only", help="Fine-tune only the decoder of --init on the codes compress writes at a random quality "
             "each step. Encoder, codebooks and prior stay as they are, so the new model reads every file the "
             "--init model wrote; no prior is fitted.")] = False,
    loss: Annotated[str, typer.Option(
        help="What the model is trained for: mse (PSNR) or ms-ssim (1 - MS-SSIM, a perceptual model). The whole "
             "recipe (e.g. --init MODEL --loss ms-ssim --priced: encoder, codebooks and decoder, then a new prior; "
             "MS-SSIM on a window at a random offset to the code grid, so --crop 177 or more), or with "
             "--decoder-only the decoder alone (likewise); the model declares it, and compress "
             "refines its latents for it.")] = "mse",
    decoder_channels: Annotated[str, typer.Option(
        help="The decoder's widths per scale, finest first, comma-separated (e.g. 32,64,128); empty: the "
             "encoder's mirrored. With --decoder-only --init MODEL, a narrower decoder than MODEL's starts from "
             "its most important channels: it decodes faster and still reads MODEL's files.")] = "",
    full_res_channels: Annotated[int, typer.Option(
        min=0, help="Give the decoder a full-resolution stage of N channels (a transposed convolution from the "
             "last half-resolution features, two 3x3 convolutions; it starts adding nothing): the plain decoder "
             "makes each pixel a linear function of four half-resolution features. With --decoder-only --init "
             "MODEL it is trained on MODEL's codes and the new model still reads MODEL's files. 0: none, or "
             "--init's.")] = 0,
    encoder_channels: Annotated[str, typer.Option(
        help="The encoder's widths per scale, finest first, comma-separated (default 64,96,128, or with --init "
             "MODEL, MODEL's). With --encoder-only --init MODEL: narrower widths than MODEL's, for a faster "
             "encoder.")] = "",
    encoder_only: Annotated[bool, typer.Option(
        "--encoder-only", help="Train only the encoder of --init. With --encoder-channels: a narrower encoder "
             "distilled from --init's (it starts from that encoder's most important channels and learns its "
             "latents on training crops). Without: --init's encoder itself learns, for --loss (the model's own), "
             "latents whose codes, picked as compress picks them, its decoder reproduces best. Codebooks, prior "
             "and decoders stay as they are, so the new model reads every file the --init model wrote.")] = False,
    effort: Annotated[Optional[int], typer.Option(
        min=0, max=len(EFFORT_BEAMS) - 1, help="With --decoder-only: the encoder effort whose codes the decoder "
             f"learns (0 greedy .. {len(EFFORT_BEAMS) - 1}; default: compress's for --loss: mse {describe_default()}; "
             f"ms-ssim {describe_default('ms-ssim')}).",
        show_default=False)] = None,
    top_decoder_from: Annotated[int, typer.Option(
        help="With --decoder-only: train a second decoder for qualities N and up (files of N or more stages) and "
             "keep --init's decoder for the qualities below, so the top gains without costing the low qualities. "
             "0: one decoder for all.")] = 0,
    top_decoder_channels: Annotated[str, typer.Option(
        help="With --decoder-only --top-decoder-from N: the second decoder's widths per scale, finest first, "
             "comma-separated (e.g. 64,96,128), wider than --init's: the wider decoder starts as the same "
             "function and learns what the narrow one could not. Empty: --init's widths.")] = "",
    cached_codes: Annotated[int, typer.Option(
        min=0, help="With --decoder-only: code each training image whole, once, at N of the qualities trained "
             "(drawn per image) before the first step, and train on windows of those codes, without flips. "
             "Steps get faster (coding crops takes most of a CPU step at the top qualities) and learn the codes "
             "of whole images, as files hold them. 0: code each step's crops anew.")] = 0,
    float16_weights: Annotated[bool, typer.Option(
        "--float16-weights", help="Store the encoder's and decoders' weights as float16 in the model file (half "
             "the size; computed in float32 when loaded). A model trained from one that has it keeps it.")] = False,
    decoder_from: Annotated[Optional[Path], typer.Option(
        help="With --decoder-only: start the trained decoder from this model's (e.g. an earlier fine-tune of "
             "--init) instead of --init's.")] = None,
    precision: Annotated[str, typer.Option(
        help="Arithmetic of the encoder and decoder in training steps: float32, or bfloat16 (autocast; the "
             "quantizer stays float32): about twice as fast a step on CPUs with AMX or AVX-512 BF16 and on "
             "GPUs, many times slower on CPUs without (emulated).")] = "float32",
    priced: Annotated[bool, typer.Option(
        "--priced", help="With --init (full recipe): pick codes in training as compress does, rate-aware under "
             "--init's prior and rate weights, instead of nearest; codebooks and decoder learn the codes that "
             "are really written, and the new prior is counted under the same weights.")] = False,
) -> None:
    """Train a model on a folder of photos with the seed's recipe, and write a model file.

    Pretraining, k-means codebook initialisation, joint training with EMA codebooks,
    then the entropy prior is fitted on the training images (--prior-views). Writes OUT,
    OUT with .ckpt (checkpoint) and .jsonl (metrics per step). Runs under torchrun too.
    When stdout is not a terminal (> log), progress is printed there as plain lines.

    Example: vqcodec train --data photos/ --val val/ --steps 200 --out m.safetensors

    --loss ms-ssim trains for MS-SSIM instead of MSE. With --decoder-only --init MODEL, only MODEL's
    decoder is fine-tuned, on the codes compress writes (its stages, rate weights and prior). With --encoder-only
    --init MODEL --encoder-channels W, a narrower encoder learns MODEL's latents; with --encoder-only --init
    MODEL alone, MODEL's encoder is tuned for MODEL's decoder.
    """
    from vqcodec.model import ModelConfig  # here, so other commands start without torch
    from vqcodec.pricing import parse_weights
    from vqcodec.train import TrainConfig, train as run_training

    try:
        widths = _widths(decoder_channels, "--decoder-channels")
        encoder_widths = _widths(encoder_channels, "--encoder-channels")
        model = ModelConfig(name=name, num_stages=stages, codebook_size=codebook_size, latent_dim=latent_dim,
                            decoder_channels=widths, description=f"trained by vqcodec train on {data}",
                            float16_weights=float16_weights, full_res_channels=full_res_channels)
        weights = parse_weights(rate_weights)
        cfg = TrainConfig(data=data, out=out, val=val, model=model, steps=steps, pretrain_steps=pretrain_steps,
                          batch_size=batch_size, crop=crop, lr=lr, val_every=val_every,
                          checkpoint_every=checkpoint_every, resume=resume, init=init, device=device, workers=workers,
                          seed=seed, prior_views=prior_views, rate_weights=weights, prior_rounds=prior_rounds,
                          decoder_only=decoder_only, loss=loss, effort=effort, top_decoder_from=top_decoder_from,
                          decoder_from=decoder_from, priced=priced, precision=precision,
                          encoder_channels=encoder_widths, encoder_only=encoder_only, cached_codes=cached_codes,
                          top_decoder_channels=_widths(top_decoder_channels, "--top-decoder-channels"))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    plain = None if sys.stdout.isatty() else PlainProgress(cfg, sys.stdout)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=False, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("train", total=steps, info="", completed=0)
        prior_task: list[Any] = []

        def on_bar(m: dict[str, Any]) -> None:
            event = m.get("event")
            if event == "phase" and m["phase"] == "prior":
                progress.update(task, info="done")
                prior_task.append(progress.add_task("prior", total=m["images"] * m.get("rounds", 1), info=f"entropy prior, {m['views']} view(s) per image"))
            elif event == "phase" and m["phase"] == "coding":
                prior_task.append(progress.add_task("coding", total=m["images"], info="training images, once"))
            elif event == "phase":
                progress.update(task, info=f"phase {m['phase']}")
            elif event in ("prior", "coding"):
                progress.update(prior_task[-1], completed=m["image"])
            else:
                progress.update(task, completed=m["step"], info=_step_info(m))

        def on_step(m: dict[str, Any]) -> None:
            on_bar(m)
            if plain is not None:
                plain(m)

        try:
            run_training(cfg, on_step=on_step)
        except KeyboardInterrupt:
            err_console.print(f"interrupted: checkpoint written to {cfg.checkpoint}; "
                              f"continue with --resume {cfg.checkpoint}")
            raise typer.Exit(130) from None
    console.print(f"wrote {out} (metrics in {cfg.log})", markup=False, highlight=False)
