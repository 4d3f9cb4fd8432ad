"""The Bending tab: bend a layer's weights, its output channels (`unravel channels`) or morph
towards another model (`unravel morph`), hear your audio (or the bundled loop) through them
next to the unbent model, save the model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from unravel import audio, limits, safewrite
from unravel.app.common import BUNDLED_LOOP, Library, _on_page, whole
from unravel.errors import UnravelError
from unravel.operations import BEND, CHANNEL_OPS, CHANNELS, MORPH


@dataclass(frozen=True)
class BendResult:
    wav: Path            # the audio (default: the bundled loop) through the bent model's forward
    command: str         # the `unravel bend` commands that make the same model
    seconds: float
    unbent: Path | None = None   # the same audio through the unbent model (A/B)


def bend_layers(library: Library, rave: str) -> list[str]:
    """The layers of a model, learned ones first (fixed filterbanks such as pqmf.* last)."""
    from unravel.modelinfo import layers as model_layers
    model, _ = library.bender(rave)
    layers = model_layers(model.module)
    return [l.name for l in layers if l.learned] + [l.name for l in layers if not l.learned]


SLIDERS = ("offset", "spread", "randomize", "invert", "percent", "seed")


def layer_info(library: Library, rave: str, layer: str) -> str:
    """One line about a layer: shape, size, whether it is learned, its current value range."""
    from unravel.modelinfo import layers
    model, bender = library.bender(rave)
    info = next((l for l in layers(model.module) if l.name == layer), None)
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
    from unravel.bend import CHAIN, NEUTRAL
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
        b = BEND.settings(model=str(source), layer=layer, op=op, amount=amount,
                          percent=s["percent"], seed=s["seed"], output=target)
        lines.append(BEND.command_line(b) + f" --device {library.device}")
        source = target
    return "\n".join(lines)


def bend_listen(library: Library, rave: str, out_dir: str | os.PathLike,
                source: str | os.PathLike | None = None, bent: bool = True,
                max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB) -> Path:
    """Run `source` (default: the bundled loop; at most `max_upload_mb` MB of decoded audio)
    through the bent model's forward (or, with `bent` False, the unbent one's); write
    `bent-NNN.wav` (`unbent-NNN.wav`). An error names the source by its own name, not the
    page's copy's path."""
    model = library.bender(rave)[0] if bent else library.model(rave)
    out_dir = safewrite.check_writable_dir(out_dir)
    source = source or BUNDLED_LOOP
    try:
        x = audio.load(source, model.sr, model.in_channels, max_bytes=int(max_upload_mb * 2**20))
    except UnravelError as e:
        raise UnravelError(str(e).replace(str(source), Path(source).name)) from None
    y = model.forward(x)
    name = audio.free_name(out_dir, "bent" if bent else "unbent", [".wav"])
    return audio.write(out_dir / f"{name}.wav", y, model.sr)


def bend_generate(library: Library, rave: str, layer: str, offset: float = 0.0,
                  spread: float = 1.0, randomize: float = 0.0, invert: bool = False,
                  percent: float = 100.0, seed: int = 0,
                  out_dir: str | os.PathLike = ".",
                  source: str | os.PathLike | None = None,
                  max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB) -> BendResult:
    """Bend a layer as the sliders say and hear `source` (default: the bundled loop) through
    the bent model, and through the unbent one to compare."""
    bend_apply(library, rave, layer, offset, spread, randomize, invert, percent, seed)
    return _listen_both(library, rave, out_dir, source, max_upload_mb,
                        bend_command(library, rave, f"{Path(rave).stem}-bent.ts"))


def _listen_both(library: Library, rave: str, out_dir, source, max_upload_mb: float,
                 command: str) -> BendResult:
    """`source` through the bent model and through the unbent one, with `command`."""
    wav = bend_listen(library, rave, out_dir, source, max_upload_mb=max_upload_mb)
    unbent = bend_listen(library, rave, out_dir, source, bent=False, max_upload_mb=max_upload_mb)
    info = audio.sf.info(str(wav))
    return BendResult(wav, command, info.frames / info.samplerate, unbent)


WHICH = ("all", "list", "percent")     # how the channel controls pick the channels


def channels_generate(library: Library, rave: str, layer: str, op: str, amount: float = 1.0,
                      which: str = "all", channels: str = "", percent: float = 25.0, seed: int = 0,
                      out_dir: str | os.PathLike = ".", source: str | os.PathLike | None = None,
                      max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB) -> BendResult:
    """A channel op (`Bender.channels`, as `unravel channels`) on the layer's output channels:
    all of them, the `channels` listed ("0 5 7") or `percent` of them picked with `seed`;
    hear `source` through it. Its command: `unravel channels` on the model file."""
    if which not in WHICH:
        raise UnravelError(f"channels: pick all, list or percent, got {which!r}")
    listed = channels.replace(",", " ").split() if which == "list" else None
    if which == "list" and not listed:
        raise UnravelError("channels: list the channel numbers, e.g. 0 5 7")
    s = CHANNELS.settings(model=rave, layer=layer, op=op, amount=amount, channels=listed,
                          percent=percent if which == "percent" else None, seed=whole(seed, "Seed"),
                          output=f"{Path(rave).stem}-channels.ts")
    _, bender = library.bender(rave)
    bender.channels(s.layer, s.op, s.amount, s.channels, s.percent, s.seed)
    return _listen_both(library, rave, out_dir, source, max_upload_mb,
                        CHANNELS.command_line(s) + f" --device {library.device}")


def morph_generate(library: Library, rave: str, other: str, t: float, prefix: str = "",
                   out_dir: str | os.PathLike = ".", source: str | os.PathLike | None = None,
                   max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB) -> tuple[BendResult, str]:
    """Morph the model towards `other` (`Bender.morph`, as `unravel morph`): every layer
    (starting with `prefix`) both have becomes (1-t)·A + t·B; hear `source` through it.
    Returns the result (its command: `unravel morph`) and what matched."""
    s = MORPH.settings(a=rave, b=other, t=t, layers=prefix or None, output=f"{Path(rave).stem}-morph.ts")
    _, bender = library.bender(rave)
    m = bender.morph(Path(library.key(s.b)), s.t, s.layers)
    r = _listen_both(library, rave, out_dir, source, max_upload_mb,
                     MORPH.command_line(s) + f" --device {library.device}")
    return r, m.summary()


def bend_restore(library: Library, rave: str, layer: str | None = None) -> None:
    """Put the original weights back bit for bit (one layer, or all) and clear the settings."""
    _, bender = library.bender(rave)
    bender.restore(layer or None)


def bend_save(library: Library, rave: str, out_dir: str | os.PathLike) -> tuple[Path, str]:
    """Save the bent model as a TorchScript file nn~ and [unravel~] load; with its command."""
    out_dir = safewrite.check_writable_dir(out_dir)
    name = audio.free_name(out_dir, f"{Path(rave).stem}-bent", [".ts"])
    _, bender = library.bender(rave)
    path = bender.save(out_dir / f"{name}.ts")
    return path, bend_command(library, rave, path)


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


def layout(library: Library, out_dir: Path, rave_choices: list, rave_default: str,
           max_upload_mb: float = limits.DEFAULT_MAX_UPLOAD_MB) -> None:
    """The Bending tab (inside the page's gr.Tabs; a source holds at most `max_upload_mb` MB
    of decoded audio)."""
    import gradio as gr

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
                b_seed = gr.Number(0, precision=0, minimum=0, maximum=limits.MAX_PAGE_SEED, label="Seed")
                b_source = gr.File(None, file_count="single", type="filepath",
                                   label="Audio to bend (upload your own; empty: the bundled loop)",
                                   elem_id="b-source")
                with gr.Row():
                    b_go = gr.Button("Generate", variant="primary", elem_id="b-generate")
                    b_restore = gr.Button("Restore all", elem_id="b-restore")
                    b_save = gr.Button("Save .ts", elem_id="b-save")
                with gr.Accordion("Output channels of the layer (exact rewrites of its weights)",
                                  open=False, elem_id="b-channels"):
                    c_op = gr.Radio(list(CHANNEL_OPS), value="ablate", label="Op", elem_id="c-op")
                    c_amount = gr.Number(2.0, label="Scale factor (scale)", elem_id="c-amount")
                    c_which = gr.Radio(list(WHICH), value="percent", label="Which channels",
                                       elem_id="c-which")
                    c_list = gr.Textbox("0", label="Channels (list), e.g. 0 5 7", elem_id="c-list")
                    c_percent = gr.Slider(1, 100, 25, step=1, label="Percent of the channels (picked with the seed)",
                                          elem_id="c-percent")
                    c_seed = gr.Number(0, precision=0, minimum=0, maximum=limits.MAX_PAGE_SEED,
                                       label="Seed (percent, permute)", elem_id="c-seed")
                    c_go = gr.Button("Apply to the channels", elem_id="c-generate")
                with gr.Accordion("Morph towards another model: (1-t)·this + t·B, layer by layer",
                                  open=False, elem_id="b-morph"):
                    m_other = gr.Dropdown(rave_choices, value=None, label="Model B (best: fine-tuned "
                                          "from the same base)", allow_custom_value=True, elem_id="m-other")
                    t_opt = MORPH.option("t")
                    m_t = gr.Slider(t_opt.low, t_opt.high, 0.5, step=0.01, label="t", elem_id="m-t")
                    m_prefix = gr.Textbox("", label="Only the layers starting with (empty: all)",
                                          elem_id="m-prefix")
                    m_go = gr.Button("Morph", elem_id="m-generate")
                    m_summary = gr.Markdown("", elem_id="m-summary")
            with gr.Column():
                b_audio = gr.Audio(type="filepath", label="Bent",
                                   interactive=False, buttons=["download"],
                                   elem_id="b-audio")
                b_unbent = gr.Audio(type="filepath", label="Unbent (the same audio, the original model)",
                                    interactive=False, buttons=["download"],
                                    elem_id="b-unbent")
                b_model = gr.File(label="Bent model", interactive=False, elem_id="b-model")
                b_cmd = gr.Code(label="The same from the command line", language="shell", wrap_lines=True,
                                interactive=False, elem_id="b-cmd")

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
        def on_bend(rave, layer, offset, spread, randomize, invert, percent, seed, source,
                    progress=gr.Progress()):
            progress(0, desc="bending")
            r = bend_generate(library, rave, layer, offset, spread, randomize, invert,
                              percent, seed, out_dir / "bending", source, max_upload_mb)
            return str(r.wav), str(r.unbent), r.command, layer_info(library, rave, layer)

        @_on_page
        def on_restore(rave, layer, source):
            bend_restore(library, rave)
            wav = bend_listen(library, rave, out_dir / "bending", source,
                              max_upload_mb=max_upload_mb)
            return [str(wav), bend_command(library, rave, "x.ts")] + settings_of(rave, layer)

        @_on_page
        def on_save(rave):
            path, command = bend_save(library, rave, out_dir / "bending")
            return str(path), command

        @_on_page
        def on_channels(rave, layer, op, amount, which, listed, percent, seed, source):
            r = channels_generate(library, rave, layer, op, amount, which, listed, percent, seed,
                                  out_dir / "bending", source, max_upload_mb)
            return [str(r.wav), str(r.unbent), r.command] + settings_of(rave, layer)

        @_on_page
        def on_morph(rave, layer, other, t, prefix, source):
            if not other:
                raise UnravelError("morph: pick model B")
            r, summary = morph_generate(library, rave, other, t, prefix, out_dir / "bending", source,
                                        max_upload_mb)
            return [str(r.wav), str(r.unbent), r.command, summary] + settings_of(rave, layer)

        c_go.click(on_channels, [b_rave, b_layer, c_op, c_amount, c_which, c_list, c_percent, c_seed,
                                 b_source], [b_audio, b_unbent, b_cmd] + sliders)
        m_go.click(on_morph, [b_rave, b_layer, m_other, m_t, m_prefix, b_source],
                   [b_audio, b_unbent, b_cmd, m_summary] + sliders)
        b_rave.change(on_model, b_rave, [b_layer] + sliders)
        b_layer.input(on_layer, [b_rave, b_layer], sliders)
        b_go.click(on_bend, [b_rave, b_layer] + sliders[:-1] + [b_source],
                   [b_audio, b_unbent, b_cmd, b_info])
        b_restore.click(on_restore, [b_rave, b_layer, b_source], [b_audio, b_cmd] + sliders)
        b_save.click(on_save, b_rave, [b_model, b_cmd])
