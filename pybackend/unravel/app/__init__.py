"""`unravel app`: a local web page for latent diffusion, UnRAVEl composition and network bending.

The functions before `build` are plain Python over the backend (the page calls them in-process,
the tests call them without a browser). `build` lays out the gradio page, `serve` starts it.
Gradio is imported only inside `build`/`serve`, so this module loads without the `[app]` extra.
"""

from __future__ import annotations

import os

# Nothing on the page may phone home: no analytics, no Hugging Face hub look-ups.
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}.items():
    os.environ.setdefault(_key, _value)

import secrets  # noqa: E402
import shlex  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

from unravel import audio, latents, stats  # noqa: E402
from unravel.distributions import DISTRIBUTIONS  # noqa: E402
from unravel.patterns import PATTERNS  # noqa: E402
from unravel.errors import UnravelError  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
BUNDLED_LOOP = DATA / "loop.wav"
CHECKPOINT_SUFFIXES = (".pt", ".ckpt", ".pth")
SEED_MAX = 999_999_999

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, desc: str) -> None:
    pass


# ---------------------------------------------------------------- models on offer

class Library:
    """The models the page offers (bundled ones plus a models folder), loaded once each.

    Decoding models are shared by the Diffusion and UnRAVEl tabs; the Bending tab bends its
    own copy of a model, so bending never changes what the other tabs hear.
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder else None
        self._lock = threading.Lock()
        self._models: dict[str, object] = {}
        self._benders: dict[str, tuple] = {}

    def _files(self, suffixes: Sequence[str]) -> list[Path]:
        if not self.folder or not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.rglob("*")
                      if p.is_file() and p.suffix.lower() in suffixes)

    def rave_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs: the bundled RAVE models by name, then `*.ts` in the folder."""
        from unravel.model import BUNDLED
        bundled = [(f"{name} (bundled)", name) for name, p in BUNDLED.items() if p.is_file()]
        return bundled + [(self._label(p), str(p)) for p in self._files((".ts",))]

    def diffusion_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs: the bundled checkpoint as `default`, then checkpoints in the folder."""
        return [("default (bundled)", "default")] + [
            (self._label(p), str(p)) for p in self._files(CHECKPOINT_SUFFIXES)]

    def _label(self, path: Path) -> str:
        return str(path.relative_to(self.folder)) if self.folder else path.name

    def search(self) -> list[Path]:
        return [self.folder] if self.folder else []

    def model(self, spec: str):
        """The shared, unbent model for `spec` (loaded on first use)."""
        from unravel.model import load_model
        key = self.key(spec)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(key)
            return self._models[key]

    def bender(self, spec: str):
        """(model, Bender) of this page's private copy of the model `spec`, for bending."""
        from unravel.bend import Bender
        from unravel.model import load_model
        key = self.key(spec)
        with self._lock:
            if key not in self._benders:
                model = load_model(key)
                self._benders[key] = (model, Bender(model))
            return self._benders[key]

    def key(self, spec: str) -> str:
        """The resolved path of a model spec (UnravelError when there is no such model)."""
        from unravel.model import resolve_model
        return str(resolve_model(spec, self.search()))


def random_seed() -> int:
    """A fresh seed for the Randomize buttons (the seed itself is shown, so results repeat)."""
    return secrets.randbelow(SEED_MAX) + 1


def fresh_dir(parent: str | os.PathLike, stem: str) -> Path:
    """A new empty folder `<parent>/<stem>-NNN` (the first free number)."""
    parent = audio.check_writable_dir(parent)
    i = 1
    while True:
        d = parent / f"{stem}-{i:03d}"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            i += 1


def whole(value, label: str) -> int:
    """An integer from a page field (UnravelError naming the field when it is empty or not whole)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UnravelError(f"{label}: give a whole number") from None
    if not np.isfinite(f) or f != int(f):
        raise UnravelError(f"{label}: give a whole number, not {value}")
    return int(f)


def _command(words: Sequence[object]) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


def _number(x: float) -> str:
    """A float as short as it can be written and still read back exactly: 1.0 -> '1'."""
    short = f"{float(x):g}"
    return short if float(short) == float(x) else repr(float(x))


# ---------------------------------------------------------------- pictures

def latents_image(z: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a PNG of (D, T) latents as an image: dims down, time across."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    z = np.asarray(z, dtype=np.float32)
    fig = Figure(figsize=(8, 1.2 + 0.22 * z.shape[0]), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    lim = float(np.max(np.abs(z))) or 1.0
    im = ax.imshow(z, aspect="auto", interpolation="nearest", cmap="magma",
                   vmin=-lim, vmax=lim, origin="upper")
    ax.set_xlabel(f"latent frame ({z.shape[1]} frames x {z.shape[0]} dims)")
    ax.set_ylabel("dim")
    ax.set_yticks(range(z.shape[0]))
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, pad=0.01)
    fig.tight_layout(rect=(0, 0, 1, 0.9))   # room for the page's label above
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return audio.atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()), force=True)


# ---------------------------------------------------------------- Diffusion tab

@dataclass(frozen=True)
class DiffusionResult:
    wav: Path            # the decoded audio
    latents: Path        # the sampled latents (.npy, (1, D, T))
    image: Path          # PNG of the latents
    command: str         # the `unravel diffuse` command that makes the same wav
    seconds: float       # length of the audio


def diffusion_command(checkpoint: str, rave: str, seed_a: int, lerp: bool, seed_b: int,
                      lerp_factor: float, temperature: float, steps: int, latent_scale: float,
                      length_mult: int, out_dir: str | os.PathLike) -> str:
    """The `unravel diffuse` command line for these settings."""
    words: list[object] = ["unravel", "diffuse", "--checkpoint", checkpoint, "--model", rave]
    if lerp:
        words += ["--lerp", "--seed-a", int(seed_a), "--seed-b", int(seed_b),
                  "--lerp-factor", _number(lerp_factor)]
    else:
        words += ["--seed", int(seed_a)]
    words += ["--steps", int(steps), "--temperature", _number(temperature),
              "--latent-scale", _number(latent_scale), "--length-mult", int(length_mult),
              "--save-latents", "-o", out_dir]
    return _command(words)


def diffusion_generate(library: Library, checkpoint: str, rave: str, seed_a: int,
                       lerp: bool = False, seed_b: int = 2, lerp_factor: float = 1.0,
                       temperature: float = 1.0, steps: int = 10, latent_scale: float = 1.0,
                       length_mult: int = 1, out_dir: str | os.PathLike = ".",
                       progress: Progress = _no_progress) -> DiffusionResult:
    """Sample latents from a diffusion checkpoint, decode them with a RAVE model, write wav + npy + PNG."""
    diffuse_files = _diffusion_backend()
    seed_a, seed_b = whole(seed_a, "Seed A"), whole(seed_b, "Seed B")
    steps, length_mult = whole(steps, "Steps"), whole(length_mult, "Length multiplier")
    out_dir = audio.check_writable_dir(out_dir)
    progress(0.0, "loading models")
    model = library.model(rave)
    seeds = (dict(seed_a=int(seed_a), seed_b=int(seed_b), lerp_factor=float(lerp_factor))
             if lerp else dict(seed=int(seed_a)))
    result = diffuse_files(model, checkpoint, out_dir, steps=int(steps),
                           temperature=float(temperature), latent_scale=float(latent_scale),
                           length_mult=int(length_mult), lerp=bool(lerp), save_latents=True,
                           on_step=lambda done, total: progress(0.9 * done / total, "diffusing"),
                           **seeds)[0]
    progress(0.95, "drawing the latents")
    z = latents.read(result.npy)
    image = latents_image(z, result.npy.with_suffix(".png"))
    info = audio.sf.info(str(result.wav))
    command = diffusion_command(checkpoint, rave, seed_a, lerp, seed_b, lerp_factor, temperature,
                                steps, latent_scale, length_mult, out_dir)
    return DiffusionResult(result.wav, result.npy, image, command, info.frames / info.samplerate)


def _diffusion_backend() -> Callable:
    """`unravel.diffusion.diffuse_files`, or UnravelError when the diffusion backend is missing."""
    try:
        from unravel.diffusion import diffuse_files
    except ImportError as e:
        raise UnravelError(f"diffusion backend not available ({e})") from None
    return diffuse_files


# ---------------------------------------------------------------- UnRAVEl tab

@dataclass(frozen=True)
class EncodeResult:
    latents: list[Path]  # one .npy per input
    plot: Path           # histograms per dimension (PNG)
    table: str           # the statistics as text
    frames: int


def encode_audio(library: Library, rave: str, inputs: Sequence[str | os.PathLike],
                 out_dir: str | os.PathLike, iqr: bool = False) -> EncodeResult:
    """Encode audio files with a RAVE model; write their latents and a statistics plot."""
    from unravel.pipeline import encode_files
    if not inputs:
        raise UnravelError("no audio given: upload a file or keep the bundled loop")
    files = list(dict.fromkeys(Path(p).resolve() for p in inputs))   # each file once
    model = library.model(rave)
    out_dir = fresh_dir(out_dir, "encoded")
    if len({f.stem for f in files}) == len(files):
        paths = encode_files(model, files, out_dir, latent_wav=False, progress=False)
    else:  # same names from different folders: one subfolder each
        paths = [encode_files(model, [f], fresh_dir(out_dir, "input"), progress=False)[0]
                 for f in files]
    z = np.concatenate([latents.read(p) for p in paths], axis=1)
    s = stats.compute(z)
    plot = stats.plot(z, out_dir / "stats.png")
    return EncodeResult(list(paths), plot, stats.format_table(s, iqr=iqr), s.frames)


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
    from unravel.pipeline import decode_files, generate_files
    if not encoded:
        raise UnravelError("nothing encoded yet: encode some audio first")
    seed, loops = whole(seed, "Seed"), whole(loops, "Loops")
    out_dir = audio.check_writable_dir(out_dir)
    model = library.model(rave)
    points = int(points) if points and not bpm else None
    bpm = float(bpm) if bpm else None
    progress(0.1, "generating latents")
    npy = generate_files(list(encoded), out_dir, pattern=pattern, dist=dist, iqr=iqr,
                         points=points, bpm=bpm, loops=int(loops), files=1, seed=int(seed),
                         sr=model.sr, ratio=model.ratio)[0]
    progress(0.5, "decoding")
    wav = decode_files(model, [npy], out_dir)[0]
    latent_wav = npy.with_name(latents.stem(npy) + latents.LATENT_WAV_SUFFIX)
    z = latents.read(npy)
    image = latents_image(z, npy.with_suffix(".png"))
    choice = ["--bpm", _number(bpm)] if bpm else ["--points", points]
    command = "\n".join([
        _command(["unravel", "generate", *encoded, "--pattern", pattern, "--dist", dist,
                  *(["--iqr"] if iqr else []), *choice, "--loops", int(loops),
                  "--seed", int(seed), "-o", out_dir]),
        _command(["unravel", "decode", "--model", rave, npy, "-o", out_dir])])
    info = audio.sf.info(str(wav))
    return ComposeResult(wav, latent_wav, npy, image, command, info.frames / info.samplerate)


# ---------------------------------------------------------------- Bending tab

@dataclass(frozen=True)
class BendResult:
    wav: Path            # the bundled loop through the bent model's forward
    command: str         # the `unravel bend` commands that make the same model
    seconds: float


def bend_layers(library: Library, rave: str) -> list[str]:
    """The layers of a model, learned ones first (fixed filterbanks such as pqmf.* last)."""
    model, _ = library.bender(rave)
    layers = model.layers()
    return [l.name for l in layers if l.learned] + [l.name for l in layers if not l.learned]


SLIDERS = ("offset", "spread", "randomize", "invert", "percent", "seed")
CHAIN = ("spread", "invert", "offset", "randomize", "zero")   # this order reproduces bit for bit
NEUTRAL = {"offset": 0.0, "spread": 1.0, "randomize": 0.0, "invert": False, "zero": False}


def layer_info(library: Library, rave: str, layer: str) -> str:
    """One line about a layer: shape, size, whether it is learned, its current value range."""
    model, bender = library.bender(rave)
    info = next((l for l in model.layers() if l.name == layer), None)
    if info is None:
        raise UnravelError(f"{rave}: no layer named {layer!r}")
    w = bender.get_weights(layer)
    kind = "learned" if info.learned else "fixed filterbank"
    return (f"`{layer}`: shape {' x '.join(map(str, info.shape))}, {info.numel} weights ({kind}), "
            f"now {w.min():.4g} .. {w.max():.4g}")


def bend_settings(library: Library, rave: str, layer: str) -> dict:
    """The bend settings of a layer (offset, spread, randomize, invert, zero, percent, seed)."""
    _, bender = library.bender(rave)
    return bender.settings(layer)


def bend_apply(library: Library, rave: str, layer: str, offset: float = 0.0, spread: float = 1.0,
               randomize: float = 0.0, invert: bool = False, percent: float = 100.0,
               seed: int = 0) -> None:
    """Set all of a layer's bend settings at once (computed from its original weights)."""
    _, bender = library.bender(rave)
    seed = whole(seed, "Seed")
    for op, amount in (("offset", offset), ("spread", spread), ("randomize", randomize),
                       ("invert", 1.0 if invert else 0.0)):
        bender.bend(layer, op, float(amount), float(percent), int(seed))


def bend_command(library: Library, rave: str, output: str | os.PathLike) -> str:
    """`unravel bend` commands (one op each, chained through files) that write the same weights
    as saving the bent model to `output`."""
    _, bender = library.bender(rave)
    steps = []
    for layer in bender.layers():
        s = bender.settings(layer)
        for op in CHAIN:
            if s[op] != NEUTRAL[op]:
                steps.append((layer, op, 1 if isinstance(s[op], bool) else s[op], s))
    if not steps:
        return "(no layer is bent: the original model)"
    output = Path(output)
    lines, source = [], rave
    for i, (layer, op, amount, s) in enumerate(steps, 1):
        target = output if i == len(steps) else output.with_name(f"{output.stem}.step{i}.ts")
        lines.append(_command(["unravel", "bend", "--model", source, "--layer", layer, "--op", op,
                               "--amount", _number(amount), "--percent", _number(s["percent"]),
                               "--seed", s["seed"], "-o", target]))
        source = target
    return "\n".join(lines)


def bend_listen(library: Library, rave: str, out_dir: str | os.PathLike,
                source: str | os.PathLike = BUNDLED_LOOP) -> Path:
    """Run `source` (default: the bundled loop) through the bent model's forward; write a wav."""
    model, _ = library.bender(rave)
    out_dir = audio.check_writable_dir(out_dir)
    x = audio.load(source, model.sr, model.in_channels)
    y = model.forward(x)
    name = audio.free_name(out_dir, "bent", [".wav"])
    return audio.write(out_dir / f"{name}.wav", y, model.sr)


def bend_generate(library: Library, rave: str, layer: str, offset: float = 0.0,
                  spread: float = 1.0, randomize: float = 0.0, invert: bool = False,
                  percent: float = 100.0, seed: int = 0,
                  out_dir: str | os.PathLike = ".") -> BendResult:
    """Bend a layer as the sliders say and hear the bundled loop through the bent model."""
    bend_apply(library, rave, layer, offset, spread, randomize, invert, percent, seed)
    wav = bend_listen(library, rave, out_dir)
    info = audio.sf.info(str(wav))
    command = bend_command(library, rave, f"{Path(rave).stem}-bent.ts")
    return BendResult(wav, command, info.frames / info.samplerate)


def bend_restore(library: Library, rave: str, layer: str | None = None) -> None:
    """Put the original weights back bit for bit (one layer, or all) and clear the settings."""
    _, bender = library.bender(rave)
    bender.restore(layer or None)


def bend_save(library: Library, rave: str, out_dir: str | os.PathLike) -> tuple[Path, str]:
    """Save the bent model as a TorchScript file nn~ and [unravel~] load; with its command."""
    out_dir = audio.check_writable_dir(out_dir)
    name = audio.free_name(out_dir, f"{Path(rave).stem}-bent", [".ts"])
    _, bender = library.bender(rave)
    path = bender.save(out_dir / f"{name}.ts")
    return path, bend_command(library, rave, path)


# ---------------------------------------------------------------- the page

def _on_page(fn: Callable) -> Callable:
    """Wrap a page handler so every failure becomes a message on the page, never a dead page."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UnravelError as e:
            raise gr.Error(str(e), duration=None, print_exception=False) from None
        except Exception as e:  # a bug or a model that fails: say so, keep the page alive
            raise gr.Error(f"{type(e).__name__}: {e}", duration=None) from None
    return handler


def _reporter(progress) -> Progress:
    return lambda fraction, desc: progress(fraction, desc=desc)


CSS = ".seed-button { align-self: flex-end; margin-bottom: 6px; }"


def theme():
    """A gradio theme with system fonts only (the default one fetches Google fonts)."""
    import gradio as gr
    return gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def build(library: Library, out_dir: str | os.PathLike):
    """The gradio page: Diffusion, UnRAVEl and Bending tabs over `library`, writing to `out_dir`."""
    import gradio as gr

    out_dir = Path(out_dir)
    rave_choices = library.rave_choices()
    rave_default = rave_choices[0][1] if rave_choices else "default"

    def randomize_button():
        return gr.Button("Randomize", size="sm", scale=0, min_width=110,
                         elem_classes="seed-button")

    with gr.Blocks(title="unravel", analytics_enabled=False) as page:
        gr.Markdown("## unravel — generate, compose and bend sound in the latent space of RAVE models")
        with gr.Tabs():
            # ---------------------------------------------------- Diffusion
            with gr.Tab("Diffusion", id="diffusion"):
                with gr.Row():
                    with gr.Column():
                        d_ckpt = gr.Dropdown(library.diffusion_choices(), value="default",
                                             label="Diffusion model", allow_custom_value=True,
                                             elem_id="d-ckpt")
                        d_rave = gr.Dropdown(rave_choices, value=rave_default,
                                             label="RAVE decoder", allow_custom_value=True)
                        with gr.Row():
                            d_seed_a = gr.Number(1, precision=0, minimum=0, maximum=SEED_MAX,
                                                 label="Seed A", elem_id="d-seed-a")
                            d_rand_a = randomize_button()
                        d_lerp = gr.Checkbox(False, label="Lerp between seeds")
                        with gr.Row():
                            d_seed_b = gr.Number(2, precision=0, minimum=0, maximum=SEED_MAX,
                                                 label="Seed B")
                            d_rand_b = randomize_button()
                        d_lerp_factor = gr.Slider(0, 1, 1, step=0.01, label="Lerp factor")
                        with gr.Accordion("Advanced", open=False):
                            d_temperature = gr.Slider(0.1, 1, 1, step=0.01, label="Temperature")
                            d_steps = gr.Slider(1, 100, 10, step=1, label="Diffusion steps",
                                                elem_id="d-steps")
                            d_scale = gr.Slider(0.1, 3, 1, step=0.05,
                                                label="Normalization (latent scale)")
                            d_mult = gr.Slider(1, 3, 1, step=1, label="Length multiplier")
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

                @_on_page
                def on_diffuse(ckpt, rave, seed_a, lerp, seed_b, factor, temperature, steps,
                               scale, mult, progress=gr.Progress(track_tqdm=True)):
                    r = diffusion_generate(library, ckpt, rave, seed_a, lerp, seed_b, factor,
                                           temperature, steps, scale, mult,
                                           out_dir / "diffusion", _reporter(progress))
                    return str(r.wav), [str(r.wav), str(r.latents)], str(r.image), r.command

                d_go.click(on_diffuse, [d_ckpt, d_rave, d_seed_a, d_lerp, d_seed_b,
                                        d_lerp_factor, d_temperature, d_steps, d_scale, d_mult],
                           [d_audio, d_files, d_image, d_cmd])

            # ---------------------------------------------------- UnRAVEl
            with gr.Tab("UnRAVEl", id="unravel"):
                u_encoded = gr.State(None)   # {"key": [...], "latents": [...]}
                with gr.Row():
                    with gr.Column():
                        u_rave = gr.Dropdown(rave_choices, value=rave_default, label="RAVE model",
                                             allow_custom_value=True)
                        u_files = gr.File(value=[str(BUNDLED_LOOP)] if BUNDLED_LOOP.exists() else None,
                                          file_count="multiple", type="filepath",
                                          label="Audio (upload, or keep the bundled loop)",
                                          elem_id="u-files")
                        u_encode = gr.Button("Encode and show statistics")
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
                            u_loops = gr.Slider(1, 16, 1, step=1, label="Loops")
                            u_seed = gr.Number(0, precision=0, minimum=0, maximum=SEED_MAX,
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
                        u_table = gr.Code(label="Statistics", interactive=False)

                u_rand.click(random_seed, outputs=u_seed, queue=False)

                def encoded_for(rave, files, iqr, state):
                    files = [str(f) for f in (files or [])]
                    key = [library.key(rave), files, bool(iqr)]
                    if state and state["key"] == key:
                        return state
                    r = encode_audio(library, rave, files, out_dir / "unravel", iqr=bool(iqr))
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

            # ---------------------------------------------------- Bending
            with gr.Tab("Bending", id="bending"):
                try:
                    layers = bend_layers(library, rave_default)
                except Exception:  # noqa: BLE001 - a broken default model must not stop the page
                    layers = []
                with gr.Row():
                    with gr.Column():
                        b_rave = gr.Dropdown(rave_choices, value=rave_default, label="RAVE model",
                                             allow_custom_value=True)
                        b_layer = gr.Dropdown(layers, value=_pick_layer(layers), label="Layer",
                                              elem_id="b-layer")
                        b_info = gr.Markdown(_safe_layer_info(library, rave_default,
                                                              _pick_layer(layers)))
                        b_offset = gr.Slider(-0.1, 0.1, 0, step=0.001, label="Offset", elem_id="b-offset")
                        b_spread = gr.Slider(0, 3, 1, step=0.01, label="Spread", elem_id="b-spread")
                        b_random = gr.Slider(0, 2000, 0, step=1,
                                             label="Randomize (Gaussian noise, 0 = off)")
                        b_invert = gr.Checkbox(False, label="Invert")
                        b_percent = gr.Slider(1, 100, 100, step=1, label="Percent of the weights")
                        b_seed = gr.Number(0, precision=0, minimum=0, maximum=SEED_MAX, label="Seed")
                        with gr.Row():
                            b_go = gr.Button("Generate", variant="primary", elem_id="b-generate")
                            b_restore = gr.Button("Restore all", elem_id="b-restore")
                            b_save = gr.Button("Save .ts", elem_id="b-save")
                    with gr.Column():
                        b_audio = gr.Audio(type="filepath", label="The bundled loop, bent",
                                           interactive=False, buttons=["download"],
                                           elem_id="b-audio")
                        b_model = gr.File(label="Bent model", interactive=False, elem_id="b-model")
                        b_cmd = gr.Code(label="The same from the command line", language="shell", wrap_lines=True,
                                        interactive=False)

                sliders = [b_offset, b_spread, b_random, b_invert, b_percent, b_seed, b_info]

                def settings_of(rave, layer):
                    s = bend_settings(library, rave, layer)
                    return [s[k] for k in SLIDERS] + [layer_info(library, rave, layer)]

                @_on_page
                def on_model(rave):
                    names = bend_layers(library, rave)
                    layer = _pick_layer(names)
                    return [gr.update(choices=names, value=layer)] + settings_of(rave, layer)

                @_on_page
                def on_layer(rave, layer):
                    return settings_of(rave, layer) if layer else [gr.update()] * len(sliders)

                @_on_page
                def on_bend(rave, layer, offset, spread, randomize, invert, percent, seed,
                            progress=gr.Progress()):
                    progress(0, desc="bending")
                    r = bend_generate(library, rave, layer, offset, spread, randomize, invert,
                                      percent, seed, out_dir / "bending")
                    return str(r.wav), r.command, layer_info(library, rave, layer)

                @_on_page
                def on_restore(rave, layer):
                    bend_restore(library, rave)
                    wav = bend_listen(library, rave, out_dir / "bending")
                    return [str(wav), bend_command(library, rave, "x.ts")] + settings_of(rave, layer)

                @_on_page
                def on_save(rave):
                    path, command = bend_save(library, rave, out_dir / "bending")
                    return str(path), command

                b_rave.change(on_model, b_rave, [b_layer] + sliders)
                b_layer.input(on_layer, [b_rave, b_layer], sliders)
                b_go.click(on_bend, [b_rave, b_layer] + sliders[:-1], [b_audio, b_cmd, b_info])
                b_restore.click(on_restore, [b_rave, b_layer], [b_audio, b_cmd] + sliders)
                b_save.click(on_save, b_rave, [b_model, b_cmd])
    return page


def _safe_layer_info(library: Library, rave: str, layer: str | None) -> str:
    try:
        return layer_info(library, rave, layer) if layer else ""
    except Exception:  # noqa: BLE001 - the page must come up even with a broken default model
        return ""


def _pick_layer(names: Sequence[str]) -> str | None:
    """A layer worth bending first: the first decoder weight, else the first layer."""
    for name in names:
        if name.startswith("decoder") and name.endswith("weight"):
            return name
    return names[0] if names else None


def serve(host: str = "127.0.0.1", port: int = 7860, models: str | os.PathLike | None = None,
          out: str | os.PathLike | None = None, block: bool = True, threads: int = 1):
    """Start the page on http://host:port; `block=False` returns (gradio app, local url)."""
    from unravel.model import set_threads
    set_threads(threads)
    models = Path(models) if models else None
    if models is not None and not models.is_dir():
        raise UnravelError(f"{models}: models folder not found")
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="unravel-app-"))
    audio.check_writable_dir(out)
    page = build(Library(models), out)
    page.queue(default_concurrency_limit=1)
    allowed = [str(out), str(DATA)] + ([str(models)] if models else [])
    try:
        app, url, _ = page.launch(server_name=host, server_port=int(port), share=False,
                                  inbrowser=False, ssr_mode=False, mcp_server=False, pwa=False,
                                  enable_monitoring=False, show_error=True, quiet=True,
                                  allowed_paths=allowed, theme=theme(), css=CSS,
                                  footer_links=["settings"], prevent_thread_lock=True)
    except OSError as e:
        raise UnravelError(f"cannot listen on {host}:{port} (in use or not allowed: choose "
                           f"another with --port)") from None
    print(f"unravel app: http://{host}:{port}/  (outputs in {out})", flush=True)
    if not block:
        return page, url
    try:
        page.block_thread()
    finally:
        page.close()


def cmd_app(args) -> int:
    """`unravel app`: serve the page until interrupted."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UnravelError("the web page needs gradio: pip install 'unravel[app]'") from None
    serve(args.host, args.port, args.models, args.out, threads=args.threads)
    return 0
