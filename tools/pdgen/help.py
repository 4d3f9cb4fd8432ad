"""The help patches pd/unravel~-help.pd, bender-help.pd, chns0n-help.pd, ch4ns0n-help.pd and
ch8ns0n-help.pd, in the style of Pd's own reference (osc~-help.pd): a title line with a
[pd reference] subpatch, separators, a small working example, the rest of the messages in
subpatches that [s] to the object, a see-also line (plain object boxes) and "updated for". Every window fits in
1000x700 and nothing overlaps (tests/test_pd_help_layout.py measures both).

Job messages work from the help's own folder (the library folder): inputs are the bundled
examples/loop.wav, outputs go to ~/Documents/unravel/help."""

from __future__ import annotations

from . import bender, chns0n
from .canvas import Canvas

VERSION = "unravel 0.1.0 (Pd 0.55)"
CW, LH = 7, 16                  # Pd's character width and line height at font size 12
OUT = "~/Documents/unravel/help"


def wrap(text: str, width: int) -> int:
    """How many lines Pd wraps `text` into at `width` characters."""
    n, col = 1, 0
    for word in text.split():
        if col and col + 1 + len(word) > width:
            n, col = n + 1, len(word)
        else:
            col += len(word) + (1 if col else 0)
    return n


def note(c: Canvas, x: int, y: int, text: str, width: int) -> int:
    """A comment of `width` characters at (x, y); returns the y below it."""
    c.text(x, y, text, width)
    return y + wrap(text, width) * LH + 8


def separator(c: Canvas, y: int, heavy: bool = False) -> None:
    c.cnv(8, y, c.w - 16, 2 if heavy else 1, "", "#000000", sel=1)


def section(c: Canvas, y: int, label: str) -> int:
    """A reference section bar (INLETS:, OUTLETS: ...); returns the y below it."""
    c.cnv(15, y, c.w - 30, 3, label, "#202020", fs=13, sel=1)
    return y + 26


def reference(name: str, title: str, parts: list[tuple[str, list[tuple[str, str]]]],
              sub: str = "reference", w: int = 900, gap: int = 2) -> Canvas:
    """[pd reference] (or [pd <sub>]): for each (section, [(what, description)]) a bar and its rows."""
    r = Canvas(w, 100, name=sub)
    r.text(20, 12, f"[{name}] - {title}", 86)
    y = 44
    for label, rows in parts:
        y = section(r, y, label) if label else y - 8
        for what, desc in rows:
            r.text(30, y, what, 24)
            y = max(y + wrap(what, 24) * LH + 6, note(r, 210, y, desc, (w - 240) // CW)) + gap
        y += 6
    separator(r, y, heavy=True)
    r.head = r.head.replace(f" 100 {sub}", f" {y + 30} {sub}")
    return r


def header(c: Canvas, name: str, title: str, ref: Canvas, as_object: bool = True) -> int:
    """The title line (the object, or its name for a panel abstraction), [pd reference],
    a separator; returns the y below it."""
    if as_object:
        c.obj(name, "title", 20, 14)
    else:
        c.text(20, 14, f"[{name}]")
    c.text(32 + CW * (len(name) + 2), 14, f"- {title}", 60)
    c.sub(c.w - 190, 14, "reference", ref)
    c.text(c.w - 80, 14, "<= click")
    separator(c, 44)
    return 56


# our graph-on-parent abstractions and their panels' sizes (as their modules draw them)
PANELS = {"bender": (bender.W, bender.H + 1), "chns0n": (chns0n.W, chns0n.H + 1),
          "ch4ns0n": (chns0n.W, chns0n.H + 1), "ch8ns0n": (chns0n.W, chns0n.H + 1)}


def footer(c: Canvas, also: list[str]) -> None:
    """A separator, 'see also:' and 'updated for', as in Pd's reference patches: the related
    objects as plain object boxes (right-click > Help opens theirs). A panel abstraction
    would draw its whole panel in the footer, so those sit in a [pd see-also] subpatch."""
    y = c.h - 64
    separator(c, y)
    c.text(15, y + 10, "see also:")
    x = 95
    for name in (n for n in also if n not in PANELS):
        c.obj(name, None, x, y + 10)
        x += CW * len(name) + 24
    panels = [n for n in also if n in PANELS]
    if panels:
        c.sub(x, y + 10, "see-also", _see_also(panels))
        names = ", ".join(f"[{n}]" for n in panels)
        c.text(x + CW * len("pd see-also") + 20, y + 10,
               f"<- {names}: open it, right-click a panel > Help", 70)
    c.text(15, y + 36, f"updated for {VERSION}", 40)


def _see_also(panels: list[str]) -> Canvas:
    """[pd see-also]: the panel abstractions `panels` as plain object boxes, in rows."""
    g = Canvas(1000, 100, name="see-also")
    note(g, 20, 10, "Right-click a panel > Help: its help patch.", 60)
    x, y, row = 20, 40, 0
    for name in panels:
        w, h = PANELS[name]
        if x + w > g.w - 20:
            x, y, row = 20, y + row + 20, 0
        g.obj(name, None, x, y)
        x, row = x + w + 30, max(row, h)
    g.h = y + row + 20
    g.head = g.head.replace(" 100 see-also", f" {g.h} see-also")
    return g


def _msg_lines(m: str) -> int:
    return wrap(m, 60)          # Pd wraps a box without a width at 60 characters


def rows(c: Canvas, x: int, y: int, items: list[tuple[str, str]], send: str,
         gap: int = 14, dry: bool = False) -> int:
    """Message boxes in a column, each into its own [s <send>] at its lower right (so that no
    cord crosses another box), each with its comment to the right; returns the y below them
    (dry: only that)."""
    mw = max(min(len(m), 60) for m, _ in items) * CW + 12
    sx = x + mw + 8
    cx = sx + (len(send) + 2) * CW + 12 + gap
    width = max(20, (c.w - cx - 20) // CW)
    for m, desc in items:
        lines = _msg_lines(m)
        if not dry:
            key = c.msg(m, None, x, y)
            c.connect(key, 0, c.obj(f"s {send}", None, sx, y + lines * LH + 2), 0)
            c.text(cx, y, desc, width)
        y = max(y + lines * LH + 24, y + wrap(desc, width) * LH + 8)
    return y


def group(name: str, intro: str, items: list[tuple[str, str]], send: str,
          extra=None, w: int = 760) -> Canvas:
    """A subpatch of messages for the object: each goes to its own [s <send>]."""
    g = Canvas(w, 100, name=name)
    y = note(g, 15, 12, intro, (w - 40) // CW) + 6
    y = rows(g, 15, y, items, send, gap=16) + 12
    if extra:
        y = extra(g, y)
    g.head = g.head.replace(" 100 " + name, f" {y + 10} {name}")
    return g


# ----------------------------------------------------------------------- [unravel~]

def unravel_help() -> str:
    c = Canvas(720, 480)
    ref = reference("unravel~", "RAVE models, their layers and UnRAVEl jobs in Pd", [
        ("INLETS:", [("1st: signal", "the model's first input channel (with -m: all channels in one "
                                     "multichannel signal)"),
                     ("1st: messages", "bang, enable, load, reload, method, bufsize, sync, poly, set, get, "
                                       "layers, get_weights, set_weights, bend, channels, morph, "
                                       "output, restore, save and the "
                                       "jobs encode, stats, generate, decode, tempo, diffuse"),
                     ("2nd...: signal", "the other input channels (without -m)")]),
        ("OUTLETS:", [("1st...: signal", "one per output channel (with -m: one multichannel outlet)"),
                      ("rightmost: messages", "replies: status lines after bang, loaded <model> "
                                              "(a load took over), attribute, layers, "
                                              "done <job> <results...>, error <job> <reason>")]),
        ("ARGUMENTS:", [("1) symbol", "model: a TorchScript file (.ts optional) beside the patch or on "
                                      "Pd's path, 'default' (8 dims) or 'default4' (4 dims), bundled"),
                        ("2) symbol", "method: forward (default), encode, decode or another (one the "
                                      "model lacks: a post, then forward, as nn~)"),
                        ("3) float", "bufsize: samples per model call, rounded up to a power of two "
                                     "(default 4096), 0: in the DSP thread"),
                        ("(none)", "an empty object (also when the model fails to load, one error "
                                   "line): one signal inlet and outlet, zeros, 'loaded 0' on bang, "
                                   "until 'load <model>'")]),
        ("FLAGS:", [("-m", "one multichannel inlet and outlet"), ("-d", "start disabled"),
                    ("-g / -gpu", "run the model on the GPU (CUDA, else MPS), without one it posts 'GPU mode not available'"),
                    ("-sync / -live", "the audio thread waits for the model (bit-identical renders, "
                                      "the default under pd -batch) / never waits (late = silence)"),
                    ("-p", "poly 1: voices share one model call (live mode)")]),
    ])
    y = header(c, "unravel~", "run RAVE models, bend them, compose with their latents", ref)
    y = note(c, 20, y, "[unravel~] runs a RAVE model (a TorchScript file with the nn~ contract) on "
                       "the signal, on its own thread. Its rightmost outlet answers the messages "
                       "(printed in Pd's window). The subpatches on the right hold the rest of the "
                       "messages: click them open.", 96)
    # the working example (left)
    c.obj("osc~ 220", "osc", 20, y + 10)
    c.msg("bang", "bang", 150, y + 10)
    c.msg("enable 0", "en0", 200, y + 10)
    c.msg("enable 1", "en1", 280, y + 10)
    c.obj("r $0-u", "r", 300, y + 45)
    c.obj("unravel~ default forward", "u", 20, y + 80)
    for m in ("bang", "en0", "en1", "r"):
        c.connect(m, 0, "u", 0)
    c.connect("osc", 0, "u", 0)
    c.obj("route error", "rerr", 125, y + 115)     # an error: the object prints it, once
    c.connect("u", 1, "rerr", 0)
    c.obj("print unravel~", "pr", 225, y + 115)
    c.connect("rerr", 1, "pr", 0)
    c.obj("*~ 0.2", "g", 20, y + 115)
    c.connect("u", 0, "g", 0)
    c.obj("dac~", "dac", 20, y + 150)
    c.connect("g", 0, "dac", 0)
    c.connect("g", 0, "dac", 1)
    c.msg("; pd dsp 1", "on", 90, y + 150)
    c.msg("; pd dsp 0", "off", 180, y + 150)
    note(c, 20, y + 190, "bang: the status (model, method, bufsize, latency, underruns...). "
                         "enable 0: bypass (the outputs are zeros).", 48)
    # the groups (right)
    x = 400
    gy = y + 10
    groups = [
        ("model", "load, reload, method, bufsize, sync, attributes", model_group()),
        ("layers", "layers, weights, bending, save", layers_group()),
        ("jobs", "UnRAVEl: encode, stats, generate, decode, tempo, diffuse", jobs_group()),
        ("job-options", "every option of each job", job_options()),
        ("multichannel", "-m: the latents in one signal", multichannel_group()),
        ("registry", "the model registry (nn~'s): list, download", registry_group()),
    ]
    for name, what, g in groups:
        c.sub(x, gy, name, g)
        gy = max(gy + 40, note(c, x + 130, gy, what, 26) + 6)
    footer(c, ["bender", "chns0n", "ch8ns0n"])
    return c.render()


def model_group() -> Canvas:
    return group("model", "The model and how it runs. Replies go to the rightmost outlet (printed "
                          "by [print unravel~] in the main window).", [
        ("load default4", "another model: a .ts file beside the patch or on Pd's path. It loads "
                          "in the background while the old one plays, then takes over at a block "
                          "boundary and replies 'loaded <model>'"),
        ("load default", "back to the bundled 8-dim model"),
        ("reload", "the model file again: every original weight back"),
        ("method forward", "another method of the model (forward, encode, decode...)"),
        ("bufsize 2048", "samples per model call: rounded up to a power of two, at least the "
                         "model's ratio (posted)"),
        ("bufsize 0", "run the model in the DSP thread (one model block per buffer)"),
        ("sync 1", "the audio thread waits for the model: bit-identical renders"),
        ("sync 0", "never wait (live): a late buffer plays as silence"),
        ("poly 1", "voices: objects of one model file, method and bufsize share one batched "
                   "model call, each with its own state (live mode. Under -batch each plays "
                   "alone). Batched arithmetic rounds differently (about 1e-6). A bent object "
                   "leaves the group. bang replies 'poly <wish> <members> <items>'"),
        ("poly 0", "play alone (the default): exact"),
        ("set temperature 0.5", "set a model attribute (an error if the model has none)"),
        ("get temperature", "replies 'attribute temperature <values>'"),
        ("gpu 1", "the model to the GPU (gpu 0: back to the CPU, bends kept), without one: a post"),
    ], "$0-u")


def layers_group() -> Canvas:
    def table(g: Canvas, y: int) -> int:
        g.obj("table $0-weights 8", None, 15, y)
        return note(g, 180, y, "get_weights <layer> $0-weights reads into this table (resized), "
                               "set_weights <layer> $0-weights writes it back.", 70) + 10
    return group("layers", "Network bending: read, change and restore the weights of one layer "
                           "(a weight tensor named as the model names it) while the model plays.", [
        ("layers", "replies 'layers <name> <name> ...' (every weight tensor)"),
        ("get_weights encoder.net.10.bias", "replies 'encoder.net.10.bias <floats>'"),
        ("layer_stats decoder.net.2.weight", "replies 'layer_stats <layer> <size> <min> <max> "
                                             "<mean> <std>' of its weights now"),
        ("set_weights encoder.net.10.bias 0 0 0 0 0 0 0 0", "from a list (the length must match)"),
        ("bend decoder.net.2.weight offset 0.05", "bend: offset, spread, randomize, invert or "
                                                  "zero, then an amount"),
        ("bend decoder.net.2.weight spread 2 50 7", "... on 50 percent of the weights, seed 7"),
        ("restore decoder.net.2.weight", "that layer's original weights, bit for bit"),
        ("channels decoder.net.6.weight scale 2 list 0 5", "output channels 0 and 5 x2, exactly "
                                                           "(ablate, scale <k>, invert, permute, "
                                                           "then all, a percent or list <c>..., "
                                                           "then a seed)"),
        ("channels decoder.net.6.weight ablate 25 7", "a quarter of its output channels "
                                                      "silent, picked with seed 7"),
        ("morph default4 0.3", "the layers both have (name, shape) become 0.7 x "
                               "this + 0.3 x that. Best for models fine-tuned from one base. "
                               "Replies 'morph <matched> <unmatched>'"),
        ("morph default4 0.3 decoder.", "... only the layers named decoder.*. Send t from a "
                                        "[line]: a burst keeps the newest"),
        ("output decoder.net.6 offset 0.1", "what that layer gives, in the graph: offset <v>, "
                                            "threshold <v> (at or below -> 0), clamp <lo> <hi>. "
                                            "A [line] may move the value"),
        ("restore", "every layer's original weights (bends, morphs and output ops undone)"),
        (f"save {OUT}/bent.ts", "the bent model as a TorchScript file nn~ loads too (an "
                                "existing file is kept: add 'force' to replace it)"),
    ], "$0-u", extra=table, w=980)


def jobs_group() -> Canvas:
    def phrase(g: Canvas, y: int) -> int:
        g.obj("array define phrase", "arr", 15, y + 35)
        g.msg("read -resize examples/loop.wav phrase", "read", 15, y)
        g.obj("soundfiler", "sf", 180, y + 35)
        g.connect("read", 0, "sf", 0)
        return note(g, 330, y, "A latent set <set> is the arrays <set>-0 ... <set>-<D-1>, "
                                "audio one array per channel at Pd's rate. A job reads its "
                                "input arrays when it starts, writes its output arrays in one "
                                "go when it ends (made if missing). A file in with arrays out "
                                "works too. [chns0n] plays a set: 'arrays gen'.", 86) + 10
    return group("jobs", "UnRAVEl jobs run in a process of the object's own (the sound goes on), one at "
                         "a time in the order sent, and reply 'done <job> <results...>' or "
                         "'error <job> <reason>'. Relative paths start at this patch's folder (the "
                         f"library: examples/loop.wav is there). The files go to {OUT}. Options "
                         "are those of the unravel command line. The last five work on Pd "
                         "arrays, no file: read the phrase below first.", [
        (f"encode input examples/loop.wav output {OUT} latent-wav 1",
         "audio -> latents (.npy and .latent.wav)"),
        (f"stats input {OUT}/loop.npy", "statistics of latents (.stats.json)"),
        (f"generate input {OUT}/loop.npy output {OUT} pattern fibo points 11 seed 1",
         "new latents from those statistics (a new file name each time)"),
        (f"decode input {OUT}/loop.npy output {OUT}", "latents -> audio (.wav)"),
        ("tempo bpm 120", "replies 'done tempo <frames> <bpm> <double bpm> <seconds>'"),
        (f"diffuse output {OUT} steps 10 seed 1", "latent diffusion: 'done diffuse <wav> <npy>'"),
        ("encode input-array phrase output-array lat",
         "the array phrase -> the latent set lat (lat-0 ... lat-7): 'done encode lat'"),
        ("stats input-array lat", "replies 'done stats lat <D>', then mean, std, min, max "
                                  "per dimension"),
        ("generate input-array lat output-array gen pattern fibo points 11 seed 1",
         "a pattern from those statistics into the set gen"),
        ("decode input-array gen output-array heard", "latents -> audio in the array heard"),
        ("diffuse output-array dif steps 10 seed 1", "latent diffusion into the set dif (not "
                                                     "decoded: play it with [chns0n])"),
    ], "$0-u", extra=phrase, w=1000)


def job_options() -> Canvas:
    """A subpatch per job listing its options: the rows come from the job's declaration
    (unravel.operations), the one the command line's options come from too."""
    from unravel.operations import PD_JOBS
    g = Canvas(560, 100, name="job-options")
    y = note(g, 15, 12, "Each job takes its options as 'key value' pairs, in any order: those "
                        "of the unravel command of the same name, with the same bounds and "
                        "defaults (a switch takes 0 or 1, a list repeats its key). The object's "
                        "model replaces --model. input-array and output-array are Pd's own.", 74)
    for i, spec in enumerate(PD_JOBS):
        x, row = 15 + (i % 3) * 170, y + 10 + (i // 3) * 40
        g.sub(x, row, spec.name, reference(spec.name, spec.help, [("", spec.pd_rows())],
                                           sub=spec.name, w=1000, gap=0))
    g.head = g.head.replace(" 100 job-options", f" {y + 100} job-options")
    return g


def registry_group() -> Canvas:
    def obj(g: Canvas, y: int) -> int:
        g.obj("r $0-reg", "r", 15, y)
        g.obj("unravel~", "u", 15, y + 30)
        g.connect("r", 0, "u", 0)
        g.obj("print registry", "pr", 15, y + 60)
        g.connect("u", 1, "pr", 0)
        return note(g, 180, y + 30, "no model needed. On the job thread: lines in the Pd window "
                                    "as nn~'s, then 'done <message> ...' or 'error <message> "
                                    "<reason>'. UNRAVEL_REGISTRY_URL sets the registry's address.",
                    60) + 40
    return group("registry", "nn~'s model registry. download and remove work in the folder of "
                             "the patch holding the object: here the library folder, so copy these "
                             "into your own patch to download beside it.", [
        ("print_available_models", "posts every model card (source/model/name) of the registry"),
        ("download ircam/rave/nasa", "as nasa.ts (whole or not at all, a file already there is kept)"),
        ("download ircam/rave/nasa mynasa", "the same as mynasa.ts"),
        ("remove nasa", "deletes nasa.ts in the patch's folder (nothing else)"),
    ], "$0-reg", extra=obj, w=760)


def multichannel_group() -> Canvas:
    g = Canvas(560, 330, name="multichannel")
    y = note(g, 15, 12, "With -m, [unravel~] has one multichannel inlet and outlet (Pd 0.54+): "
                        "here the 8 latents of encode travel in one signal into decode. Without -m "
                        "it has one signal outlet per latent.", 74)
    g.obj("noise~", "n", 15, y + 10)
    g.obj("unravel~ -m default encode", "e", 15, y + 45)
    g.obj("unravel~ -m default decode", "d", 15, y + 80)
    g.obj("snake~ out", "sn", 240, y + 80)
    g.obj("*~ 0.2", "g", 15, y + 115)
    g.obj("dac~", "dac", 15, y + 150)
    g.chain("n", "e", "d", "g", "dac")
    g.connect("e", 0, "sn", 0)
    g.connect("g", 0, "dac", 1)
    note(g, 330, y + 80, "<- the 8 channels apart", 24)
    return g


# ----------------------------------------------------------------------- [bender]

def bender_help() -> str:
    c = Canvas(960, 700)
    ref = reference("bender", "bend the layers of an [unravel~] model while it plays", [
        ("INLETS:", [("1st: messages", "[unravel~]'s rightmost outlet (Bender reads 'layers', "
                                       "'attributes', 'layer_stats', 'channels' and 'morph'), "
                                       "or 'public <name>'"),
                     ("2nd: bang", "Reload: the model file again, then Init")]),
        ("OUTLET:", [("messages", "for [unravel~]: bang, layers, get_weights, layer_stats, bend, "
                                  "channels, morph, restore, set_weights, enable, reload, "
                                  "set <attribute> <value>")]),
        ("ARGUMENT:", [("1) symbol", "a public name: each control's label is its name, "
                                     "'offset 0.05' sent to it ([s b1] for [bender b1]) sets "
                                     "that control as if moved")]),
        ("CONTROLS:", [("init, layer", "read the layers and the model's attributes, choose a layer"),
                       ("size min max mean std", "the layer's weights now, after every change "
                                                 "(from 'layer_stats')"),
                       ("offset spread randomize", "the bends, recomputed from the original weights "
                                                   "(randomize 0: off), each slider shows its value"),
                       ("invert, percent, seed", "invert, the share of elements touched, the seed"),
                       ("res, push, plot, fix", "restore the layer, write the drawn graph, show it, "
                                                "keep the graph's scale (compare layers and bends)"),
                       ("CHANNELS: op", "a click applies ablate, scale (by k: moving k then "
                                        "rescales), invert or permute to the layer's output "
                                        "channels, exactly. A channel op and a bend replace each "
                                        "other on a layer"),
                       ("k, pct, cseed, chans", "the factor of scale. The channels: pct percent "
                                                "of them picked with cseed (100: all), or the "
                                                "list typed into chans ('chans 0 5' by name), "
                                                "whichever was set last"),
                       ("MORPH: file, morph", "model B (a dialog, or 'file <path>' by name), then "
                                              "t from 0 (this model) to 1 (B) in every layer both "
                                              "have: best between two models fine-tuned from one "
                                              "base. res_all: every layer's original weights"),
                       ("pqmf.* layers", "a fixed filterbank (not learned): its name shows '_(fixed)'"),
                       ("MSPrior, AFTER", "the model's attributes temperature, listen (MSPrior) "
                                          "and guidance_structure, guidance_timbre, nb_steps "
                                          "(AFTER: structure, timbre, steps). Each row shows "
                                          "only when the model has them")]),
    ], w=980)
    y = header(c, "bender", "bend the layers of an [unravel~] model while it plays", ref,
               as_object=False)
    y = note(c, 20, y, "Wire [bender] between [unravel~]'s rightmost outlet and its inlet, turn "
                       "DSP on, click Init, choose a layer (decoder.* layers change the sound most) "
                       "and move the sliders, click a channel op, or choose a model B and morph. "
                       "The graph and its numbers show the layer.", 130)
    # left: [unravel~] and its panel; right: the loop, DSP, Reload
    c.obj("r~ $0-loop", "src", 20, y + 10)
    c.obj("r $0-u", "r", 150, y + 10)
    c.obj("unravel~ default forward", "u", 20, y + 45)
    c.connect("src", 0, "u", 0)
    c.connect("r", 0, "u", 0)
    c.obj("dac~", "dac", 20, y + 80)
    c.connect("u", 0, "dac", 0)
    c.connect("u", 0, "dac", 1)
    c.obj("bender", "b", 20, y + 120)
    c.connect("u", 1, "b", 0)
    c.obj("s $0-u", "s", 20, y + 500)
    c.connect("b", 0, "s", 0)
    x = 720
    c.text(x, y + 10, "the bundled loop:")
    loop = Canvas(450, 220, name="loop")
    loop.obj("s~ $0-loop", "snd", 20, 150)
    loop.connect(_loop_player(loop, 20, 20), 0, "snd", 0)
    c.sub(x, y + 35, "loop", loop)
    c.msg("; pd dsp 1", "on", x, y + 75)
    c.msg("; pd dsp 0", "off", x + 90, y + 75)
    c.msg("bang", "reload_b", x, y + 140)
    c.obj("s $0-reload", "rl_s", x, y + 170)
    c.connect("reload_b", 0, "rl_s", 0)
    c.obj("r $0-reload", "rl_r", 240, y + 80)
    c.connect("rl_r", 0, "b", 1)
    note(c, x + 100, y + 140, "<- into Bender's right inlet: Reload (the model file "
                              "again, the original weights) and Init", 19)
    footer(c, ["unravel~", "chns0n"])
    return c.render()


# ----------------------------------------------------------------------- [chns0n] & co

def player_help(obj: str, dims: int, model: str, latent: str) -> str:
    c = Canvas(860, 660)
    args = ([("1) float", "D: the number of latent dimensions (channels), the model's decode "
                          "inputs (default 8)"),
             ("2) symbol", "a public name: '<name> open <file>', '<name> render 1'")]
            if obj == "chns0n" else
            [("1) symbol", f"a public name ([{obj}] is [chns0n {dims}])")])
    ref = reference(obj, "loop a latent wav or Pd arrays into [unravel~ -m <model> decode]", [
        ("INLET:", [("open <file>", "read a latent wav (relative: the top patch's folder) and play "
                                    "it at once"),
                    ("arrays <name>", "play the array set <name>: the D arrays <name>-0 .. "
                                      "<name>-(D-1), one value per frame. It takes over at the next "
                                      "loop boundary (at once when not rendering), sample-exact, the "
                                      "loop never cut. The set playing is read again at each "
                                      "boundary: what was written into it (a job, [array set], a "
                                      "message, the mouse) is heard from the next one on. A "
                                      "missing array: one line on Pd's console ('chns0n: arrays "
                                      "<name>: no array ...', after Pd's own), the set playing "
                                      "plays on"),
                    ("now", "take the set asked for (or the playing one as it is now) at once, "
                            "keeping the position in the loop"),
                    ("loop <frames>", "the loop length of array sets from the next boundary on "
                                      "(0: the size of <name>-0, the default). Frames past an "
                                      "array's end play its last value"),
                    ("render 1 / 0", "start at frame 0 / stop (the last frame is held)"),
                    ("loops <n>", "the file holds n loops: frames, BPM and seconds are shown (and "
                                  "'loaded' reports them) for one (default 1)"),
                    ("beats <n>", "the beats in one loop, for the BPM shown and reported, from "
                                  "the next open or loop length on. 0 (the default): about 2 a "
                                  "second, the nearest whole number. The bundled loop (8 s at "
                                  "180 BPM) is 24 beats"),
                    ("bang", "a file dialog (or the Load button)"),
                    ("public <name>", "set the public name")]),
        ("OUTLETS:", [("1st: signal", "the frames, D channels in one multichannel signal, one "
                                      "frame every 2048 samples"),
                      ("2nd: messages", "'loaded <frames> <bpm> <double bpm>' (of one loop) after "
                                        "each open, 'loop <n>' at each loop boundary while array "
                                        "sets play (n counts loops from 0 at render 1), in the "
                                        "boundary's logical time: ask for the next set there")]),
        ("ARGUMENTS:", args),
    ])
    shown = obj if obj != "chns0n" else f"chns0n {dims}"
    y = header(c, obj, "loop a latent wav or arrays into [unravel~ -m decode]", ref, as_object=False)
    y = note(c, 20, y, "Plays a latent wav (D channels, one frame per latent step, as 'unravel "
                       "encode --latent-wav' and 'unravel generate' write them), or a set of D Pd "
                       "arrays, one frame every 2048 samples, looping, out of one multichannel "
                       "outlet, into the decoder. BPM = 60 * beats * (sr / 2048) / frames. Turn DSP on, "
                       "open, render 1, then switch to the array sets: each takes over at the "
                       "next loop boundary.", 100)
    c.obj("loadbang", "lb", 20, y + 8)        # the bundled latents are loaded at once
    y += 42
    x = 20
    for key, m in (("open", f"beats 24, open examples/{latent}"), ("r1", "render 1"), ("r0", "render 0"),
                   ("bang", "bang")):
        c.msg(m, key, x, y)
        x += CW * len(m) + 24
    note(c, x, y, "<- file dialog", 20)
    c.connect("lb", 0, "open", 0)
    # the array sets' messages, right of the cords above (the one from bang runs at x 380)
    sets = (f"{obj}-a", f"{obj}-b")
    x = 430
    for key, m in (("sa", f"arrays {sets[0]}"), ("sb", f"arrays {sets[1]}"), ("now", "now"),
                   ("l16", "loop 16"), ("l0", "loop 0")):
        c.msg(m, key, x, y + 34)
        x += CW * len(m) + 16
    p = y + 80
    c.obj(shown, "p", 20, p)
    for m in ("open", "r1", "r0", "bang", "sa", "sb", "now", "l16", "l0"):
        c.connect(m, 0, "p", 0)
    note(c, 340, p, f"The file here: examples/{latent}, the bundled loop encoded by the "
                    f"'{model}' model ({dims} dims). examples/2-composition.pd makes new ones.", 52)
    c.sub(340, p + 60, "sets", _player_sets(sets, dims, latent), "sets")
    note(c, 400, p + 60, f"<- the sets {sets[0]} and {sets[1]}: the loop's second half and its "
                         f"first quarter, {dims} arrays each. Click an array to draw into it: a "
                         f"set playing changes at its next loop.", 44)
    note(c, 340, p + 140, "now: at once, the position kept. loop 16: loops of 16 frames from "
                          "the next boundary, loop 0: the set's own length. At each boundary "
                          "'loop <n>' comes out (on the console here).", 56)
    c.obj(f"print {obj}", "pr", 340, p + 210)
    c.connect("p", 1, "pr", 0)
    c.obj(f"unravel~ -m {model} decode", "u", 20, p + 210)
    c.connect("p", 0, "u", 0)
    c.obj("*~ 0.5", "g", 20, p + 245)
    c.obj("dac~", "dac", 20, p + 280)
    c.connect("u", 0, "g", 0)
    c.connect("g", 0, "dac", 0)
    c.connect("g", 0, "dac", 1)
    c.msg("; pd dsp 1", "on", 90, p + 280)
    c.msg("; pd dsp 0", "off", 180, p + 280)
    footer(c, [o for o in ("chns0n", "ch4ns0n", "ch8ns0n", "unravel~") if o != obj])
    return c.render()


def _player_sets(sets: tuple[str, str], dims: int, latent: str) -> Canvas:
    """[pd sets]: two array sets of `dims` arrays, read at load from the bundled latents: the
    loop's second half and its first quarter."""
    g = Canvas(520, 200, name="sets")
    y = note(g, 20, 10, f"{sets[0]}: the loop's second half, {sets[1]}: its first quarter "
                        f"(the arrays' sizes). Click an array to see it, draw in it.", 66)
    frames = 172                               # the bundled loop's length
    sizes = (frames // 2, frames // 4)         # the arrays' sizes: what is read
    reads = (f"read -skip {frames // 2} examples/{latent} "
             + " ".join(f"{sets[0]}-{k}" for k in range(dims)),
             f"read examples/{latent} " + " ".join(f"{sets[1]}-{k}" for k in range(dims)))
    my = y
    for k, text in enumerate(reads):           # at load, each set on its own
        chain = (("obj", "loadbang"), ("msg", text), ("obj", "soundfiler"))
        prev = None
        for kind, t in chain:
            key = (g.msg if kind == "msg" else g.obj)(t, None, 20, my)
            if prev:
                g.connect(prev, 0, key, 0)
            prev = key
            my += (wrap(t, 60) * LH + 14) if kind == "msg" else 30
        my += 10
    ay = my + 10
    for j, name in enumerate(sets):
        for k in range(dims):
            g.obj(f"array define {name}-{k} {sizes[j]}", None, 20 + 240 * j, ay + 30 * k)
    g.head = g.head.replace(" 200 sets", f" {ay + 30 * dims + 10} sets")
    return g


# ----------------------------------------------------------------------- shared pieces

def _loop_player(c: Canvas, x: int, y: int, wav: str = "examples/loop.wav") -> str:
    """The bundled loop (`wav`, relative to the patch), looping, into the returned object."""
    c.obj("loadbang", "lp_lb", x, y)
    c.msg(f"read -resize {wav} $0-loop", "lp_read", x, y + 25)
    c.obj("soundfiler", "lp_sf", x, y + 50)
    c.chain("lp_lb", "lp_read", "lp_sf")
    c.obj("table $0-loop", "lp_tab", x + 200, y + 50)
    c.msg("bang", "lp_play", x + 200, y + 75)
    c.obj("tabplay~ $0-loop", "lp_tp", x, y + 100)
    c.connect("lp_play", 0, "lp_tp", 0)
    c.connect("lp_tp", 1, "lp_tp", 0)          # loop: bang at the end restarts
    c.obj("t b", "lp_tb", x + 120, y + 75)
    c.connect("lp_sf", 0, "lp_tb", 0)
    c.connect("lp_tb", 0, "lp_tp", 0)
    return "lp_tp"


def _dac(c: Canvas, src: str, x: int, y: int, outlet: int = 0) -> None:
    c.obj("*~ 0.5", "dac_g", x, y)
    c.obj("dac~", "dac", x, y + 25)
    c.connect(src, outlet, "dac_g", 0)
    c.connect("dac_g", 0, "dac", 0)
    c.connect("dac_g", 0, "dac", 1)
    c.msg("; pd dsp 1", "dsp_on", x + 80, y)
    c.msg("; pd dsp 0", "dsp_off", x + 170, y)


def patches() -> dict[str, str]:
    return {"unravel~-help.pd": unravel_help(),
            "bender-help.pd": bender_help(),
            "chns0n-help.pd": player_help("chns0n", 8, "default", "loop.latent.wav"),
            "ch8ns0n-help.pd": player_help("ch8ns0n", 8, "default", "loop.latent.wav"),
            "ch4ns0n-help.pd": player_help("ch4ns0n", 4, "default4", "loop4.latent.wav")}
