"""The Diffusion tab: sample latents from a diffusion checkpoint and decode them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from unravel import audio, latents, limits, plots, safewrite
from unravel.app.common import (Library, Progress, _no_progress,
                                _on_page, _reporter, random_seed,
                                randomize_button, whole)
from unravel.errors import UnravelError
from unravel.operations import DIFFUSE
from unravel.settings import Settings


@dataclass(frozen=True)
class DiffusionResult:
    wav: Path            # the decoded audio
    latents: Path        # the sampled latents (.npy, (1, D, T))
    image: Path          # PNG of the latents
    command: str         # the `unravel diffuse` command that makes the same wav
    seconds: float       # length of the audio


AUTO_ARCH = "auto"   # the architecture field's "from the checkpoint, else its preset"


def diffusion_settings(checkpoint: str, rave: str, seed_a: int, lerp: bool, seed_b: int,
                       lerp_factor: float, temperature: float, steps: int, latent_scale: float,
                       length_mult: int, out_dir: str | os.PathLike,
                       arch: str | os.PathLike | None = None) -> Settings:
    """The page's fields as `unravel diffuse` settings (the latents are always saved)."""
    seeds = (dict(lerp=True, seed_a=seed_a, seed_b=seed_b, lerp_factor=lerp_factor)
             if lerp else dict(seed=seed_a))
    return DIFFUSE.settings(checkpoint=str(checkpoint), model=str(rave), arch=arch, steps=steps,
                            temperature=temperature, latent_scale=latent_scale,
                            length_mult=length_mult, save_latents=True, output=out_dir, **seeds)


def diffusion_command(s: Settings, device: str = "cpu") -> str:
    """The `unravel diffuse` command line for these settings, on the page's `device`."""
    return DIFFUSE.command_line(s, also=("checkpoint", "model", "steps", "temperature",
                                         "latent_scale", "length_mult")) + f" --device {device}"


def diffusion_generate(library: Library, checkpoint: str, rave: str, seed_a: int,
                       lerp: bool = False, seed_b: int = 2, lerp_factor: float = 1.0,
                       temperature: float = 1.0, steps: int = 10, latent_scale: float = 1.0,
                       length_mult: int = 1, out_dir: str | os.PathLike = ".",
                       progress: Progress = _no_progress,
                       arch: str | os.PathLike | None = None) -> DiffusionResult:
    """Sample latents from a diffusion checkpoint, decode them with a RAVE model, write wav + npy + PNG.

    `arch`: the architecture for a checkpoint that does not store one (a preset name such
    as `flex-512` or `original`, or a JSON file); None or "auto" lets the checkpoint choose.
    """
    diffuse_files = _diffusion_backend()
    arch = None if not arch or str(arch) == AUTO_ARCH else str(arch)
    seed_a, seed_b = whole(seed_a, "Seed A"), whole(seed_b, "Seed B")
    steps, length_mult = whole(steps, "Steps"), whole(length_mult, "Length multiplier")
    out_dir = safewrite.check_writable_dir(out_dir)
    checkpoint = library.checkpoint(checkpoint)   # only the bundled one or the models folder's
    progress(0.0, "loading models")
    model = library.model(rave)
    s = diffusion_settings(checkpoint, rave, seed_a, lerp, seed_b, lerp_factor, temperature,
                           steps, latent_scale, length_mult, out_dir, arch)
    try:
        result = diffuse_files(model, s, out_dir,
                               on_step=lambda done, total: progress(0.9 * done / total, "diffusing"),
                               device=library.device)[0]
    except UnravelError as e:   # the page's name for what the command line calls --arch
        raise UnravelError(str(e).replace("give the right one with --arch FILE.json",
                                          "choose it in the Architecture field")) from None
    progress(0.95, "drawing the latents")
    z = latents.read(result.npy)
    image = plots.latents_image(z, result.npy.with_suffix(".png"))
    info = audio.sf.info(str(result.wav))
    command = diffusion_command(s, library.device)
    return DiffusionResult(result.wav, result.npy, image, command, info.frames / info.samplerate)


def _diffusion_backend() -> Callable:
    """`unravel.diffusion.diffuse_files`, or UnravelError when the diffusion backend is missing."""
    try:
        from unravel.diffusion import diffuse_files
    except ImportError as e:
        raise UnravelError(f"diffusion backend not available ({e})") from None
    return diffuse_files


def layout(library: Library, out_dir: Path, rave_choices: list, rave_default: str) -> None:
    """The Diffusion tab (inside the page's gr.Tabs)."""
    import gradio as gr

    with gr.Tab("Diffusion", id="diffusion"):
        with gr.Row():
            with gr.Column():
                d_ckpt = gr.Dropdown(library.diffusion_choices(), value="default",
                                     label="Diffusion model", allow_custom_value=True,
                                     elem_id="d-ckpt")
                d_rave = gr.Dropdown(rave_choices, value=rave_default,
                                     label="RAVE decoder", allow_custom_value=True)
                with gr.Row():
                    d_seed_a = gr.Number(1, precision=0, minimum=0, maximum=limits.MAX_PAGE_SEED,
                                         label="Seed", elem_id="d-seed-a")
                    d_rand_a = randomize_button()
                d_lerp = gr.Checkbox(False, label="Lerp between seeds", elem_id="d-lerp")
                with gr.Row(visible=False) as d_seed_b_row:
                    d_seed_b = gr.Number(2, precision=0, minimum=0, maximum=limits.MAX_PAGE_SEED,
                                         label="Seed B", elem_id="d-seed-b")
                    d_rand_b = randomize_button()
                d_lerp_factor = gr.Slider(0, 1, 1, step=0.01, label="Lerp factor", visible=False,
                                          info="how far towards seed B the end gets (0: all A, 1: B)",
                                          elem_id="d-lerp-factor")
                with gr.Accordion("Advanced", open=False):
                    d_temperature = gr.Slider(0.1, 1, 1, step=0.01, label="Temperature",
                                              info="scale of the starting noise: lower is calmer")
                    d_steps = gr.Slider(1, 100, 10, step=1, label="Diffusion steps",
                                        info="more steps: cleaner latents, slower",
                                        elem_id="d-steps")
                    d_scale = gr.Slider(0.1, 3, 1, step=0.05,
                                        label="Normalization (latent scale)",
                                        info="the latents' spread after the z-score: louder, wilder above 1")
                    d_mult = gr.Slider(1, 3, 1, step=1, label="Length multiplier",
                                       info="sample this many times the model's latent length")
                    from unravel.diffusion.checkpoint import arch_names
                    d_arch = gr.Dropdown([AUTO_ARCH, *arch_names()], value=AUTO_ARCH,
                                         label="Architecture", allow_custom_value=True,
                                         info="for checkpoints that do not store one: a preset, "
                                              "or upload its JSON below (auto: the checkpoint's, "
                                              "else the Flex'ed preset for its length)",
                                         elem_id="d-arch")
                    d_arch_file = gr.File(label="Architecture JSON (DiffusionModel arguments)",
                                          file_types=[".json"], type="filepath", height=120,
                                          elem_id="d-arch-file")
                d_go = gr.Button("Generate", variant="primary", elem_id="d-generate")
            with gr.Column():
                d_audio = gr.Audio(type="filepath", label="Audio", interactive=False,
                                   buttons=["download"], elem_id="d-audio")
                d_files = gr.File(label="Download", file_count="multiple",
                                  interactive=False, elem_id="d-files")
                d_image = gr.Image(type="filepath", label="Latents (dims x time)",
                                   interactive=False, elem_id="d-latents")
                d_cmd = gr.Code(label="The same from the command line", language="shell", wrap_lines=True,
                                interactive=False, elem_id="d-command")

        d_rand_a.click(random_seed, outputs=d_seed_a, queue=False)
        d_rand_b.click(random_seed, outputs=d_seed_b, queue=False)

        def on_lerp(lerp):   # as Black Latents: Seed B and the factor only when lerping
            return (gr.update(label="Seed A" if lerp else "Seed"), gr.update(visible=bool(lerp)),
                    gr.update(visible=bool(lerp)))

        d_lerp.change(on_lerp, d_lerp, [d_seed_a, d_seed_b_row, d_lerp_factor], queue=False)

        @_on_page
        def on_diffuse(ckpt, rave, seed_a, lerp, seed_b, factor, temperature, steps,
                       scale, mult, arch, arch_file, progress=gr.Progress(track_tqdm=True)):
            r = diffusion_generate(library, ckpt, rave, seed_a, lerp, seed_b, factor,
                                   temperature, steps, scale, mult,
                                   out_dir / "diffusion", _reporter(progress),
                                   arch=arch_file or arch)
            return str(r.wav), [str(r.wav), str(r.latents)], str(r.image), r.command

        d_go.click(on_diffuse, [d_ckpt, d_rave, d_seed_a, d_lerp, d_seed_b,
                                d_lerp_factor, d_temperature, d_steps, d_scale, d_mult,
                                d_arch, d_arch_file],
                   [d_audio, d_files, d_image, d_cmd])
