"""The UnRAVEl tab: encode audio, show its statistics, compose a pattern and decode it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from unravel import audio, latents, limits, plots, safewrite, stats
from unravel.app.common import (BUNDLED_LOOP, Library, Progress,
                                _no_progress, _on_page, _reporter, fresh_dir,
                                random_seed, randomize_button, whole)
from unravel.distributions import DISTRIBUTIONS
from unravel.errors import UnravelError
from unravel.operations import DECODE, GENERATE
from unravel.patterns import PATTERNS


# Loops the page starts with: 4 x the 11-point fibo pattern = 76 frames, 3.5 s at 44.1 kHz.
DEFAULT_LOOPS = 4


@dataclass(frozen=True)
class EncodeResult:
    latents: list[Path]  # one .npy per input
    plot: Path           # histograms per dimension (PNG)
    table: str           # the statistics as text
    frames: int


def encode_audio(library: Library, rave: str, inputs: Sequence[str | os.PathLike],
                 out_dir: str | os.PathLike, iqr: bool = False,
                 max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB) -> EncodeResult:
    """Encode audio files with a RAVE model; write their latents and a statistics plot.
    A file whose decoded samples (32-bit float) exceed `max_upload_mb` MB is refused.
    An error names each input file by its own name (an upload's, not the page's copy's path)."""
    try:
        return _encode_audio(library, rave, inputs, out_dir, iqr, max_upload_mb)
    except UnravelError as e:
        message = str(e)
        for p in inputs:
            for form in {str(Path(p).resolve()), str(p)}:
                message = message.replace(form, Path(p).name)
        raise UnravelError(message) from None


def _encode_audio(library: Library, rave: str, inputs: Sequence[str | os.PathLike],
                  out_dir: str | os.PathLike, iqr: bool = False,
                  max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB) -> EncodeResult:
    from unravel.pipeline import encode_files
    if not inputs:
        raise UnravelError("no audio given: upload a file (or leave it empty for the bundled loop)")
    files = list(dict.fromkeys(Path(p).resolve() for p in inputs))   # each file once
    for f in files:
        check_upload(f, max_upload_mb)
    model = library.model(rave)
    out_dir = fresh_dir(out_dir, "encoded")
    if len({f.stem for f in files}) == len(files):
        paths = encode_files(model, files, out_dir, latent_wav=False, progress=False)
    else:  # same names from different folders: one subfolder each
        paths = [encode_files(model, [f], fresh_dir(out_dir, "input"), progress=False)[0]
                 for f in files]
    r = stats.read(paths)
    plot = plots.histograms(r.z, out_dir / "stats.png")
    return EncodeResult(list(paths), plot, stats.format_table(r.stats, iqr=iqr), r.stats.frames)


def check_upload(path: Path, max_upload_mb: float) -> None:
    """UnravelError when the audio file `path` decodes to more than `max_upload_mb` MB of
    32-bit samples: read from the header of an uncompressed file (before any sample is
    decoded), else by decoding it, stopped at the limit."""
    try:
        header = audio.sf.info(str(path))
    except (audio.sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
        header = None
    known = header is not None and header.frames < audio.UNKNOWN_FRAMES
    mb = header.frames * header.channels * 4 / 2**20 if known else 0
    if mb > max_upload_mb:
        raise UnravelError(f"{path.name}: {mb:.0f} MB of decoded audio, more than this page's "
                           f"limit of {max_upload_mb:g} MB (unravel app --max-upload-mb)")
    if known and header.format in ("WAV", "WAVEX", "AIFF", "RF64", "W64"):
        return
    try:                        # a compressed file: its header may lie
        audio.read(path, int(max_upload_mb * 2**20))
    except audio.TooMuchAudio:
        raise UnravelError(f"{path.name}: decodes to more than this page's limit of "
                           f"{max_upload_mb:g} MB (unravel app --max-upload-mb)") from None


@dataclass(frozen=True)
class ComposeResult:
    wav: Path            # decoded audio
    latent_wav: Path     # the generated latents as a latent wav (D channels)
    latents: Path        # the generated latents as .npy
    image: Path          # PNG of the generated latents
    command: str         # the generate + decode commands that make the same files
    seconds: float


def compose(library: Library, rave: str, encoded: Sequence[str | os.PathLike],
            out_dir: str | os.PathLike, dist: str = "normal", pattern: str = "default",
            points: int | None = 16, bpm: float | None = None, loops: int = 1, seed: int = 0,
            iqr: bool = False, progress: Progress = _no_progress) -> ComposeResult:
    """Generate a latent pattern from the statistics of encodings, then decode it."""
    from unravel.generator import generate_files
    from unravel.pipeline import decode_files
    if not encoded:
        raise UnravelError("nothing encoded yet: encode some audio first")
    seed, loops = whole(seed, "Seed"), whole(loops, "Loops")
    out_dir = safewrite.check_writable_dir(out_dir)
    model = library.model(rave)
    points = int(points) if points and not bpm else None
    bpm = float(bpm) if bpm else None
    progress(0.1, "generating latents")
    gen = GENERATE.settings(inputs=list(encoded), pattern=pattern, dist=dist, iqr=iqr,
                            points=points, bpm=bpm, loops=loops, seed=seed, model=rave,
                            output=out_dir)
    npy = generate_files(gen.replace(sr=model.sr, ratio=model.ratio))[0]
    progress(0.5, "decoding")
    wav = decode_files(model, [npy], out_dir)[0]
    latent_wav = npy.with_name(latents.stem(npy) + latents.LATENT_WAV_SUFFIX)
    z = latents.read(npy)
    image = plots.latents_image(z, npy.with_suffix(".png"))
    dec = DECODE.settings(model=rave, inputs=[npy], output=out_dir)
    command = "\n".join([GENERATE.command_line(gen, also=("pattern", "dist", "loops", "seed")),
                         DECODE.command_line(dec) + f" --device {library.device}"])
    info = audio.sf.info(str(wav))
    return ComposeResult(wav, latent_wav, npy, image, command, info.frames / info.samplerate)


def layout(library: Library, out_dir: Path, rave_choices: list, rave_default: str,
           max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB) -> None:
    """The UnRAVEl tab (inside the page's gr.Tabs); uploads are limited to `max_upload_mb`
    MB of decoded audio per file."""
    import gradio as gr

    with gr.Tab("UnRAVEl", id="unravel"):
        u_encoded = gr.State(None)   # {"key": [...], "latents": [...]}
        with gr.Row():
            with gr.Column():
                u_rave = gr.Dropdown(rave_choices, value=rave_default, label="RAVE model",
                                     allow_custom_value=True)
                u_files = gr.File(None, file_count="multiple", type="filepath",
                                  label=f"Audio (upload your own; empty: the bundled loop; at most "
                                        f"{max_upload_mb:g} MB of decoded audio per file)",
                                  elem_id="u-files")
                u_encode = gr.Button("Encode and show statistics", elem_id="u-encode")
                with gr.Row():
                    u_dist = gr.Dropdown(list(DISTRIBUTIONS), value="normal",
                                         label="Distribution")
                    u_pattern = gr.Dropdown(list(PATTERNS), value="fibo", label="Pattern")
                u_iqr = gr.Checkbox(False, label="IQR statistics (robust to outliers)")
                with gr.Row():
                    u_by = gr.Radio(["points", "BPM"], value="points", label="Length by")
                    u_points = gr.Number(11, precision=0, minimum=1, maximum=4096,
                                         label="Points (latent frames)", elem_id="u-points")
                    u_bpm = gr.Number(117.45, minimum=1, maximum=2000, label="Target BPM")
                with gr.Row():
                    u_loops = gr.Slider(1, 16, DEFAULT_LOOPS, step=1, label="Loops",
                                        info="repetitions of the pattern (a few seconds by default)")
                    u_seed = gr.Number(0, precision=0, minimum=0, maximum=limits.MAX_PAGE_SEED,
                                       label="Seed")
                    u_rand = randomize_button()
                u_go = gr.Button("Generate", variant="primary", elem_id="u-generate")
            with gr.Column():
                u_audio = gr.Audio(type="filepath", label="Audio", interactive=False,
                                   buttons=["download"], elem_id="u-audio")
                u_out = gr.File(label="Download (wav, latent wav, npy)",
                                file_count="multiple", interactive=False, elem_id="u-out")
                u_image = gr.Image(type="filepath", label="Generated latents (dims x time)",
                                   interactive=False)
                u_cmd = gr.Code(label="The same from the command line", language="shell", wrap_lines=True,
                                interactive=False)
                u_plot = gr.Image(type="filepath", label="Statistics of the encodings",
                                  interactive=False, elem_id="u-plot")
                u_table = gr.Code(label="Statistics", interactive=False, elem_id="u-table")

        u_rand.click(random_seed, outputs=u_seed, queue=False)

        def encoded_for(rave, files, iqr, state):
            # what the user uploaded replaces the bundled loop
            files = [str(f) for f in (files or [])] or [str(BUNDLED_LOOP)]
            key = [library.key(rave), files, bool(iqr)]
            if state and state["key"] == key:
                return state
            r = encode_audio(library, rave, files, out_dir / "unravel", iqr=bool(iqr),
                             max_upload_mb=max_upload_mb)
            return {"key": key, "latents": [str(p) for p in r.latents],
                    "plot": str(r.plot), "table": r.table}

        @_on_page
        def on_encode(rave, files, iqr, state, progress=gr.Progress(track_tqdm=True)):
            progress(0, desc="encoding")
            state = encoded_for(rave, files, iqr, state)
            return state, state["plot"], state["table"]

        @_on_page
        def on_compose(rave, files, iqr, state, dist, pattern, by, points, bpm, loops,
                       seed, progress=gr.Progress(track_tqdm=True)):
            progress(0, desc="encoding")
            state = encoded_for(rave, files, iqr, state)
            r = compose(library, rave, state["latents"], out_dir / "unravel", dist,
                        pattern, points=points if by == "points" else None,
                        bpm=bpm if by == "BPM" else None, loops=loops, seed=seed,
                        iqr=bool(iqr), progress=_reporter(progress))
            return (state, state["plot"], state["table"], str(r.wav),
                    [str(r.wav), str(r.latent_wav), str(r.latents)], str(r.image),
                    r.command)

        u_encode.click(on_encode, [u_rave, u_files, u_iqr, u_encoded],
                       [u_encoded, u_plot, u_table])
        u_go.click(on_compose, [u_rave, u_files, u_iqr, u_encoded, u_dist, u_pattern,
                                u_by, u_points, u_bpm, u_loops, u_seed],
                   [u_encoded, u_plot, u_table, u_audio, u_out, u_image, u_cmd])
