"""pd/bender-help.pd, pd/chns0n-help.pd, pd/ch4ns0n-help.pd, pd/ch8ns0n-help.pd."""

from .canvas import Canvas

TW = 80   # text width (characters)


def _head(c: Canvas, title: str, what: str) -> int:
    c.text(20, 12, title, 100)
    c.text(20, 38, what, 90)
    return 110


def _section(c: Canvas, y: int, name: str, lines: list[str], x: int = 20) -> int:
    c.text(x, y, name)
    y += 24
    for ln in lines:
        assert ";" not in ln, ln        # a ';' breaks a comment's line in Pd
        c.text(x + 10, y, ln, TW)
        y += 17 * (1 + (len(ln) + 8) // (TW - 6)) + 8
    return y + 10


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


def bender_help() -> str:
    c = Canvas(1120, 900)
    y = _head(c, "[bender] - bend the layers of an [unravel~] model while it plays",
              "A panel for network bending: pick a layer, move the sliders, and the backend "
              "recomputes the layer from its original weights (DESIGN section 5). The graph "
              "shows the result. Wire it as below: its outlet into [unravel~], [unravel~]'s "
              "rightmost (info) outlet into its left inlet. Click Init first.")
    src = _loop_player(c, 20, 140)
    c.obj("unravel~ default forward", "u", 20, 290)
    c.connect(src, 0, "u", 0)
    c.obj("bender", "b", 20, 360)
    c.connect("u", 1, "b", 0)
    c.connect("b", 0, "u", 0)
    c.msg("bang", "reload_b", 260, 330)
    c.connect("reload_b", 0, "b", 1)
    c.text(305, 330, "<- right inlet: reload the model (originals back) and Init")
    _dac(c, "u", 20, 760)
    c.text(20, 820, "the bundled loop -> the default model (forward) -> Bender -> you. Turn DSP on, "
                    "click Init, choose a layer (decoder.* layers change the sound most).", 60)
    x = 520
    y = _section(c, 140, "CREATION ARGUMENTS", [
        "[bender <name>]: optional public name. A message '<name> <control> <value>' sets a "
        "control as if you moved it, '<name> w <array message>' draws into the graph. "
        "Examples: 'b1 offset 0.05', 'b1 w const 0' then 'b1 push' (message boxes starting "
        "with a semicolon)."], x)
    y = _section(c, y, "MESSAGES (inlets)", [
        "left: the info outlet of [unravel~] (Bender reads 'layers <names...>'). 'public <name>' "
        "sets the public name.",
        "right: bang = Reload (the model file again, original weights) then Init."], x)
    y = _section(c, y, "OUTLET", [
        "messages for [unravel~]: layers, get_weights <layer> <array>, bend <layer> <op> "
        "<amount> <percent> <seed>, restore <layer>, set_weights <layer> <array>, enable 0/1, "
        "reload, set <attribute> <value>."], x)
    y = _section(c, y, "CONTROLS (public names)", [
        "init, show (print 'bender: <index> <name>'), layer (slider: index), enable, reload",
        "offset -0.1..0.1, spread 0..3 (1 = as is), randomize 2..2000 (Gaussian noise, std "
        "value*1e-4), invert (INV), percent 1..100 (Sample %: evenly spaced elements), seed: "
        "each change is sent 40 ms after the last move (debounced), then the graph refreshes.",
        "res (RES: original layer, sliders back), push (PUSH: what is drawn in the graph becomes "
        "the layer), plot (PLOT: show/hide the graph).",
        "temperature 1..1000, listen (MSPrior). guidance_structure 0..5, guidance_timbre 0..3, "
        "nb_steps 0..16 (AFTER): 'set <attribute> <value>'. A model without the attribute "
        "reports an error and nothing else happens."], x)
    _section(c, y, "EXAMPLES", ["examples/1-bending.pd (live bending), examples/3-render.pd "
                                "(one bend in a headless render). See also [unravel~], [chns0n]."], x)
    return c.render()


def player_help(obj: str, dims: int, model: str, latent: str) -> str:
    c = Canvas(1100, 760)
    y = _head(c, f"[{obj}] - loop a latent wav into [unravel~ -m {model} decode]",
              "Reads a latent wav (D channels, one frame per latent step, 32- or 64-bit float, "
              "as 'unravel encode --latent-wav' and 'unravel generate' write them) and plays one "
              "frame every 2048 samples (sr/2048 frames per second), looping, out of one "
              "multichannel outlet. The tempo readout is that of the loop: BPM = 60 * (sr/2048) "
              "/ frames (x2: double time).")
    c.msg(f"open examples/{latent}", "open", 20, 140)
    c.msg("render 1", "r1", 20, 170)
    c.msg("render 0", "r0", 100, 170)
    c.msg("bang", "bang", 180, 170)
    c.text(225, 170, "<- file dialog")
    c.obj(obj if obj != "chns0n" else f"chns0n {dims}", "p", 20, 205)
    for m in ("open", "r1", "r0", "bang"):
        c.connect(m, 0, "p", 0)
    c.obj("print loaded", "pr", 340, 395)
    c.connect("p", 1, "pr", 0)
    c.obj(f"unravel~ -m {model} decode", "u", 20, 425)
    c.connect("p", 0, "u", 0)
    _dac(c, "u", 20, 460)
    c.text(20, 520, "Turn DSP on, open, render 1.", 60)
    x = 520
    args = ([f"[chns0n <D> <name>]: D = number of latent dimensions (channels, the model's "
             "decode inputs), optional public name (as [bender]'s: '<name> open <file>', "
             "'<name> render 1', '<name> load')."] if obj == "chns0n" else
            [f"[{obj} <name>]: [chns0n {dims}] with an optional public name ('<name> open "
             "<file>', '<name> render 1', '<name> load'). [chns0n] takes any number of dims."])
    y = _section(c, 140, "CREATION ARGUMENTS", args, x)
    y = _section(c, y, "MESSAGES (inlet)", [
        "open <file>: read a latent wav (relative paths: the folder of the top-level patch). "
        "A file with fewer channels leaves the rest at 0 (a line is printed).",
        "render 1/0: start at frame 0 / stop (the last frame is held). bang or Load: file dialog.",
        "public <name>: set the public name."], x)
    y = _section(c, y, "OUTLETS", [
        "left: the latent frames, D channels in one multichannel signal (Pd >= 0.54), into "
        "[unravel~ -m <model> decode].",
        "right: 'loaded <frames> <bpm> <double bpm>' after each open."], x)
    _section(c, y, "EXAMPLES", ["examples/2-composition.pd: encode the loop, generate a fibo "
                                "pattern, play it through the decoder. examples/3-render.pd: the "
                                "same headless, written to a wav. See also [bender], [unravel~]."], x)
    return c.render()


def patches() -> dict[str, str]:
    return {"bender-help.pd": bender_help(),
            "chns0n-help.pd": player_help("chns0n", 8, "default", "loop.latent.wav"),
            "ch8ns0n-help.pd": player_help("ch8ns0n", 8, "default", "loop.latent.wav"),
            "ch4ns0n-help.pd": player_help("ch4ns0n", 4, "default4", "loop4.latent.wav")}
