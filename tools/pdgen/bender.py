"""pd/bender.pd: the network-bending panel for [unravel~] (see pd/bender-help.pd).

The panel: the layer view (graph and its numbers from `layer_stats`), the elementwise bends,
a CHANNELS column (`channels <layer> ...`), a MORPH column (`morph <file> <t>`), and the
MSPrior and AFTER rows, each a graph-on-parent subpatch [pd $0-msprior] / [pd $0-after] that
is a graph only while the model has those attributes (`attributes ...` in the reply to
`bang`): a `coords` message with graph flag 0 erases it from the panel and makes it a plain
subpatch, which Pd does not draw on the parent; flag 2 draws it again."""

from .canvas import Canvas

W, H = 660, 372
COL = 476                     # the CHANNELS and MORPH column
ROW_W = W - 4                 # the MSPrior and AFTER rows
CH_OPS = ("ablate", "scale", "invert", "permute")
# attribute -> (its row, the label of its control, which is the control's public name)
ATTRS = {"temperature": ("msprior", "temperature"), "listen": ("msprior", "listen"),
         "guidance_structure": ("after", "structure"), "guidance_timbre": ("after", "timbre"),
         "nb_steps": ("after", "steps")}
STATS = ("size", "min", "max", "mean", "std")     # the reply of layer_stats, in its order
OPS = ("offset", "spread", "randomize", "invert")
DEFAULTS = {"offset": 0, "spread": 1, "randomize": 0, "invert": 0}   # backend's defaults
SHOWN = {"offset": 0, "spread": 1, "randomize": 0, "invert": 0}      # where the controls rest
DEBOUNCE_MS = 40


def public_relay(c: Canvas, x: int, y: int, argpos: int = 1) -> None:
    """`<prefix> <control> <value...>` sent to the public name reaches `$0-<control>`. The
    prefix is creation argument `argpos` or comes in a `public <prefix>` message (-> $0-public)."""
    c.text(x, y - 22, "public name: [r <prefix>] made in [pd $0-public]")
    c.obj("loadbang", "p_lb", x, y)
    c.msg("args", "p_args", x, y + 30)
    c.obj("pdcontrol", "p_ctl", x, y + 60)
    c.chain("p_lb", "p_args", "p_ctl")
    prev, out, row = "p_ctl", 0, y + 90
    for k in range(argpos):          # the argument number argpos, if given
        c.obj("list split 1", f"p_split{k}", x, row)
        c.connect(prev, out, f"p_split{k}", 0)
        prev, out, row = f"p_split{k}", 1, row + 30
    c.obj("list", "p_arg", x, row)   # pass the first element (a one-element list)
    c.connect(prev, 0, "p_arg", 0)
    c.obj("r $0-public", "p_in", x + 120, row)
    c.msg("obj 10 40 r $1, connect 1 0 0 0", "p_mk", x, row + 60)
    c.connect("p_arg", 0, "p_mk", 0)
    c.obj("list", "p_inl", x + 120, row + 30)
    c.connect("p_in", 0, "p_inl", 0)
    c.connect("p_inl", 0, "p_mk", 0)
    c.obj("s pd-$0-public", "p_s", x, row + 90)
    c.connect("p_mk", 0, "p_s", 0)
    sub = Canvas(450, 200, name="$0-public")
    sub.obj("s $0-pub", x=10, y=10)
    c.sub(x + 160, row + 90, "$0-public", sub)
    row += 130
    c.obj("r $0-pub", "p_r", x, row)
    c.obj("list", "p_list", x, row + 30)
    c.obj("t a a", "p_t", x, row + 60)
    c.chain("p_r", "p_list", "p_t")
    c.obj("list split 1", "p_sel", x + 100, row + 90)
    c.connect("p_t", 1, "p_sel", 0)
    c.obj("makefilename $0-%s", "p_name", x + 100, row + 150)
    c.connect("p_sel", 0, "p_name", 0)
    c.obj("s", "p_send", x, row + 180)
    c.connect("p_name", 0, "p_send", 1)
    c.obj("list split 1", "p_rest", x, row + 120)
    c.connect("p_t", 0, "p_rest", 0)
    c.obj("list trim", "p_trim", x, row + 150)
    c.connect("p_rest", 1, "p_trim", 0)
    c.connect("p_trim", 0, "p_send", 0)


def layer_command(c: Canvas, sel: str, key: str) -> None:
    """[r $0-<sel>] <args> -> `<sel> <layer> <args>` on the outlet, once a layer is chosen."""
    c.obj(f"r $0-{sel}", f"{key}_r")
    c.obj("list", f"{key}_l")
    c.obj("spigot", f"{key}_sp")
    c.obj("list prepend", f"{key}_lay")
    c.obj(f"list prepend {sel}", f"{key}_sel")
    c.obj("list trim", f"{key}_trim")
    c.obj("s $0-out", f"{key}_s")
    c.chain(f"{key}_r", f"{key}_l", f"{key}_sp", f"{key}_lay", f"{key}_sel", f"{key}_trim", f"{key}_s")
    c.connect("lay_sym_r", 0, f"{key}_lay", 1)
    c.connect("lay_one", 0, f"{key}_sp", 1)


def channels_panel(c: Canvas) -> None:
    """CHANNELS: the op (a click applies it to the layer), k for scale, which channels: a
    percent with its seed (100: all) or a list typed into `chans`, whichever was set last."""
    c.cnv(COL, 20, W - COL - 2, 152, "CHANNELS", "#dfe3ee", fs=11)
    c.vradio(COL + 6, 52, len(CH_OPS), "$0-op", "op", "op", size=17)
    for k, op in enumerate(CH_OPS):
        c.text(COL + 28, 51 + 17 * k, op)
    c.nbx(COL + 96, 48, "$0-k", "k", "k", width=5, lo=-100, hi=100)
    c.nbx(COL + 96, 84, "$0-pct", "pct", "pct", width=5, lo=1, hi=100)
    c.nbx(COL + 96, 120, "$0-cseed", "cseed", "cseed", width=7, lo=0, hi=2147483647)
    c.listbox(COL + 6, 145, 11, "$0-chans", "chans", "chans", pos=1)


def morph_panel(c: Canvas) -> None:
    """MORPH: model B (a file dialog, or `file <path>` by the public name), t from 0 (A) to
    1 (B), and res_all: every layer's original weights."""
    c.cnv(COL, 176, W - COL - 2, 106, "MORPH", "#e3dfee", fs=11)
    c.bng(COL + 6, 196, "", "file", "file", size=17)
    c.symbolatom(COL + 60, 195, 16, "$0-fname")
    c.hsl(COL + 6, 240, 0, 1, "$0-morph", "morph", "morph", w=120, snd="$0-d-morph")
    c.floatatom(COL + 6 + 120 - 44, 220, 5, "$0-d-morph")
    c.bng(COL + 6, 262, "$0-res_all", "res_all", "res_all", size=17)


def msprior_row() -> Canvas:
    """[pd $0-msprior]: temperature and listen (MSPrior's attributes), shown as a graph only
    when the model has them."""
    r = Canvas(ROW_W, 42, name="$0-msprior")
    r.cnv(0, 0, ROW_W + 1, 43, "MSPrior", "#e8e0d8", fs=11)
    r.hsl(90, 20, 1, 1000, "$0-temperature", "temperature", w=130, snd="$0-d-temperature")
    r.floatatom(226, 18, 5, "$0-d-temperature")
    r.tgl(300, 18, "$0-listen", "listen", snd="$0-d-listen")
    r.gop(ROW_W, 42, on=False)
    return r


def after_row() -> Canvas:
    """[pd $0-after]: AFTER's guidance_structure, guidance_timbre and nb_steps (labels
    structure, timbre, steps), shown as a graph only when the model has them."""
    r = Canvas(ROW_W, 42, name="$0-after")
    r.cnv(0, 0, ROW_W + 1, 43, "AFTER", "#e0e8e0", fs=11)
    for x, lo, hi, lbl in [(60, 0, 5, "structure"), (250, 0, 3, "timbre"), (440, 0, 16, "steps")]:
        # the public name is the label: [; <prefix> steps 4( moves "steps"
        r.hsl(x, 20, lo, hi, f"$0-{lbl}", lbl, w=130, snd=f"$0-d-{lbl}")
        r.floatatom(x + 136, 18, 5, f"$0-d-{lbl}")
    r.gop(ROW_W, 42, on=False)
    return r


def attribute_rows(c: Canvas, x: int, y: int) -> None:
    """'attributes <name>...' (the reply to bang): each of ATTRS the model has opens its
    control's way to `set <attribute>` (no 'no attribute' error for one it lacks) and shows
    its row, the rest are closed and hidden."""
    rows = sorted({row for row, _ in ATTRS.values()})
    c.obj("t b a b", "at_t", x, y)
    c.connect("route", 2, "at_t", 0)
    c.msg("; " + "; ".join([f"$0-has-{a} 0" for a in ATTRS] + [f"$0-row-{r} 0" for r in rows]),
          "at_reset", x + 150, y + 30)
    c.connect("at_t", 2, "at_reset", 0)
    c.obj("list", "at_l", x + 60, y + 110)
    c.connect("at_t", 1, "at_l", 0)
    c.obj("list split 1", "at_split", x + 60, y + 135)     # one name at a time
    c.connect("at_l", 0, "at_split", 0)
    c.connect("at_split", 1, "at_split", 0)
    c.obj("list trim", "at_trim", x + 60, y + 160)
    c.connect("at_split", 0, "at_trim", 0)
    c.obj("route " + " ".join(ATTRS), "at_route", x + 60, y + 185)
    c.connect("at_trim", 0, "at_route", 0)
    for k, (attr, (row, lbl)) in enumerate(ATTRS.items()):
        c.msg(f"; $0-has-{attr} 1; $0-row-{row} 1", f"at_{attr}", x + 60, y + 240 + 60 * k)
        c.connect("at_route", k, f"at_{attr}", 0)
        # the control -> set <attribute> $1, while the model has it
        sx = x + 300 * k
        c.obj(f"r $0-d-{lbl}", f"set_r_{attr}", sx, y + 760)
        c.obj("route float", f"set_f_{attr}", sx, y + 785)
        c.connect(f"set_r_{attr}", 0, f"set_f_{attr}", 0)
        c.obj(f"r $0-has-{attr}", f"set_has_{attr}", sx + 100, y + 785)
        c.obj("spigot", f"set_sp_{attr}", sx, y + 820)
        c.connect(f"set_f_{attr}", 0, f"set_sp_{attr}", 0)
        c.connect(f"set_has_{attr}", 0, f"set_sp_{attr}", 1)
        last = f"set_sp_{attr}"
        if attr == "nb_steps":
            c.obj("i", "set_i_nb_steps", sx, y + 850)
            c.connect(last, 0, "set_i_nb_steps", 0)
            last = "set_i_nb_steps"
        c.msg(f"set {attr} $1", f"set_{attr}", sx, y + 880)
        c.connect(last, 0, f"set_{attr}", 0)
        c.obj("s $0-out", f"set_s_{attr}", sx, y + 905)
        c.connect(f"set_{attr}", 0, f"set_s_{attr}", 0)
    # then each row, once: a graph (flag 2) when shown, a plain subpatch (flag 0) when not
    c.obj("t b b", "at_end", x, y + 560)    # left of the messages above
    c.connect("at_t", 0, "at_end", 0)
    for k, row in enumerate(rows):
        rx = x + 480 * k
        c.obj(f"r $0-row-{row}", f"row_r_{row}", rx + 40, y + 590)
        c.obj("f", f"row_f_{row}", rx, y + 620)
        c.connect("at_end", k, f"row_f_{row}", 0)
        c.connect(f"row_r_{row}", 0, f"row_f_{row}", 1)
        c.obj("* 2", f"row_flag_{row}", rx, y + 645)
        c.connect(f"row_f_{row}", 0, f"row_flag_{row}", 0)
        c.msg(f"; pd-$0-{row} coords 0 -1 1 1 {ROW_W} 42 $1 0 0", f"row_vis_{row}", rx, y + 670)
        c.connect(f"row_flag_{row}", 0, f"row_vis_{row}", 0)


def channels_wiring(c: Canvas, x: int, y: int) -> None:
    """op -> `channels <layer> <op> [k] <pct> <cseed>` or `... <op> [k] list <c>...`; k
    moves a scale live once scale was chosen; a reply refreshes the layer view."""
    c.obj("t f f", "ch_opt", x, y)
    c.connect("op", 0, "ch_opt", 0)
    c.obj(f"== {CH_OPS.index('scale')}", "ch_isscale", x + 100, y + 25)
    c.connect("ch_opt", 1, "ch_isscale", 0)
    c.obj("sel " + " ".join(str(k) for k in range(len(CH_OPS))), "ch_sel", x, y + 50)
    c.connect("ch_opt", 0, "ch_sel", 0)
    c.obj("t b f", "ch_kt", x + 160, y)
    c.connect("k", 0, "ch_kt", 0)
    c.obj("spigot", "ch_klive", x + 160, y + 50)     # open while scale is the op
    c.connect("ch_kt", 0, "ch_klive", 0)
    c.connect("ch_isscale", 0, "ch_klive", 1)
    c.obj("f 2", "ch_kf", x + 100, y + 80)
    c.connect("ch_sel", CH_OPS.index("scale"), "ch_kf", 0)
    c.connect("ch_klive", 0, "ch_kf", 0)
    c.connect("ch_kt", 1, "ch_kf", 1)
    c.obj("list", "ch_l", x, y + 140)
    for k, op in enumerate(CH_OPS):
        text = f"{op} $1" if op == "scale" else op
        c.msg(text, f"ch_m{k}", x + 70 * k, y + 110)
        c.connect("ch_kf" if op == "scale" else "ch_sel", 0 if op == "scale" else k, f"ch_m{k}", 0)
        c.connect(f"ch_m{k}", 0, "ch_l", 0)
    c.obj("list append 100 0", "ch_pick", x, y + 165)    # the channels: pct cseed, or list c...
    c.connect("ch_l", 0, "ch_pick", 0)
    c.obj("s $0-channels", "ch_s", x, y + 190)
    c.connect("ch_pick", 0, "ch_s", 0)
    # which channels: pct (with cseed), or the list in chans, whichever was set last
    c.obj("t f b", "ch_pct", x + 160, y + 230)
    c.connect("pct", 0, "ch_pct", 0)
    c.msg("1", "ch_mode1", x + 250, y + 255)
    c.connect("ch_pct", 1, "ch_mode1", 0)
    c.obj("t b f", "ch_seed", x + 80, y + 230)
    c.connect("cseed", 0, "ch_seed", 0)
    c.obj("spigot 1", "ch_mode", x + 80, y + 280)
    c.connect("ch_seed", 0, "ch_mode", 0)
    c.connect("ch_mode1", 0, "ch_mode", 1)
    c.obj("pack 100 0", "ch_ps", x + 160, y + 305)
    c.connect("ch_pct", 0, "ch_ps", 0)
    c.connect("ch_seed", 1, "ch_ps", 1)
    c.connect("ch_mode", 0, "ch_ps", 0)
    c.connect("ch_ps", 0, "ch_pick", 1)
    c.obj("t a b", "ch_list", x, y + 230)
    c.connect("chans", 0, "ch_list", 0)
    c.msg("0", "ch_mode0", x + 40, y + 255)
    c.connect("ch_list", 1, "ch_mode0", 0)
    c.connect("ch_mode0", 0, "ch_mode", 1)
    c.obj("list prepend list", "ch_lp", x, y + 330)
    c.connect("ch_list", 0, "ch_lp", 0)
    c.connect("ch_lp", 0, "ch_pick", 1)
    # a reply (channels or morph) -> the layer view again
    c.obj("t b", "ch_reply", x, y + 380)
    c.connect("route", 4, "ch_reply", 0)
    c.connect("route", 5, "ch_reply", 0)
    c.obj("s $0-refresh", "ch_ref", x, y + 405)
    c.connect("ch_reply", 0, "ch_ref", 0)


def morph_wiring(c: Canvas, x: int, y: int) -> None:
    """file (a dialog, or `file <path>` by message) -> B; the morph slider -> `morph <B> <t>`
    once B is chosen (at once with the slider's t when B is chosen); res_all -> `restore`."""
    c.obj("openpanel", "mo_open", x, y + 50)
    c.connect("file", 0, "mo_open", 0)
    c.obj("r $0-file", "mo_r", x + 90, y)
    c.obj("route bang", "mo_bang", x + 90, y + 25)
    c.connect("mo_r", 0, "mo_bang", 0)
    c.connect("mo_bang", 0, "mo_open", 0)
    c.obj("symbol", "mo_sym", x + 90, y + 75)
    c.connect("mo_bang", 1, "mo_sym", 0)
    c.connect("mo_open", 0, "mo_sym", 0)
    c.obj("t b b s s", "mo_set", x + 90, y + 100)
    c.connect("mo_sym", 0, "mo_set", 0)
    c.obj("file splitname", "mo_split", x + 200, y + 130)
    c.connect("mo_set", 3, "mo_split", 0)
    c.obj("list split 1", "mo_name", x + 200, y + 155)
    c.connect("mo_split", 0, "mo_name", 0)
    c.obj("symbol", "mo_name_s", x + 200, y + 180)
    c.connect("mo_name", 1, "mo_name_s", 0)
    c.obj("s $0-fname", "mo_fname", x + 200, y + 205)
    c.connect("mo_name_s", 0, "mo_fname", 0)
    c.connect("mo_split", 1, "mo_fname", 0)
    c.obj("f", "mo_t", x, y + 130)
    c.connect("morph", 0, "mo_t", 0)
    c.connect("mo_set", 0, "mo_t", 0)
    c.obj("list prepend", "mo_pre", x, y + 155)
    c.connect("mo_t", 0, "mo_pre", 0)
    c.connect("mo_set", 2, "mo_pre", 1)
    c.obj("list prepend morph", "mo_sel", x, y + 180)
    c.connect("mo_pre", 0, "mo_sel", 0)
    c.obj("list trim", "mo_trim", x, y + 205)
    c.connect("mo_sel", 0, "mo_trim", 0)
    c.obj("spigot", "mo_gate", x, y + 230)           # open once B is chosen
    c.connect("mo_trim", 0, "mo_gate", 0)
    c.msg("1", "mo_on", x + 130, y + 205)
    c.connect("mo_set", 1, "mo_on", 0)
    c.connect("mo_on", 0, "mo_gate", 1)
    c.obj("s $0-out", "mo_s", x, y + 255)
    c.connect("mo_gate", 0, "mo_s", 0)
    c.obj("t b b b", "ra_t", x, y + 300)
    c.connect("res_all", 0, "ra_t", 0)
    c.msg("restore", "ra_m", x + 130, y + 330)
    c.connect("ra_t", 2, "ra_m", 0)
    c.obj("s $0-out", "ra_s", x + 130, y + 355)
    c.connect("ra_m", 0, "ra_s", 0)
    c.msg("; $0-resetui bang; $0-morph set 0; $0-d-morph set 0", "ra_ui", x + 20, y + 380)
    c.connect("ra_t", 1, "ra_ui", 0)
    c.msg("; $0-refresh bang", "ra_ref", x, y + 450)
    c.connect("ra_t", 0, "ra_ref", 0)


def patches() -> dict[str, str]:
    c = Canvas(1200, 760)
    # ------------------------------------------------------------------ the panel (GOP)
    c.cnv(0, 0, W, H, "BENDER", "#d8dce8", fs=14)
    c.bng(8, 24, "$0-init", "Init", "init")
    c.floatatom(70, 25, 4, "$0-count", "layers", pos=1)
    c.bng(150, 24, "$0-show", "Show", "show")
    c.tgl(220, 24, "$0-enable", "Enable", "enable")
    c.bng(300, 24, "$0-reload", "Reload", "reload")
    c.hsl(8, 60, 0, 1, "$0-layer", "Layer", "layer", w=200)
    c.symbolatom(220, 59, 20, "$0-name")
    c.tgl(372, 60, "$0-plot", "PLOT", "plot")
    c.tgl(430, 60, "$0-fix", "FIX", "fix")     # a fixed graph scale (no rescaling per refresh)
    c.graph(8, 88, "$0-w", 100, 300, 110, -1, 1, flags=8)
    for k, stat in enumerate(STATS):
        c.floatatom(320, 88 + 22 * k, 9, f"$0-{stat}", stat, pos=1)
    # each slider sends its value to $0-d-<name>, where a number box above its right end shows it
    sliders = [(8, 222, -0.1, 0.1, "offset", "offset", "offset", 130),
               (160, 222, 0, 3, "spread", "spread", "spread", 130),
               (312, 222, 0, 2000, "randomize", "randomize", "randomize", 130),   # 0: off
               (8, 258, 1, 100, "percent", "percent", "percent", 130)]
    for x, y, lo, hi, rcv, lbl, name, w in sliders:
        c.hsl(x, y, lo, hi, f"$0-{rcv}", lbl, name, w=w, snd=f"$0-d-{rcv}")
        c.floatatom(x + w - 44, y - 20, 5, f"$0-d-{rcv}")
    c.tgl(160, 257, "$0-invert", "invert", "invert")
    c.nbx(230, 258, "$0-seed", "seed", "seed", width=7, lo=0, hi=2147483647)
    c.bng(330, 257, "$0-res", "RES", "res")
    c.bng(390, 257, "$0-push", "PUSH", "push")
    channels_panel(c)
    morph_panel(c)
    # under the rows: seen where a row is hidden
    c.text(10, 340, "MSPrior and AFTER: shown when the model has their attributes (Init)", 80)
    c.sub(2, 284, "$0-msprior", msprior_row(), "msprior")
    c.sub(2, 328, "$0-after", after_row(), "after")
    c.gop(W, H + 1)

    # ------------------------------------------------------------------ wiring
    c.text(10, 400, "left inlet: [unravel~]'s info outlet. right inlet: bang = reload. "
                    "outlet: to [unravel~]", 60)
    c.obj("inlet", "in_info", 10, 440)
    c.obj("inlet", "in_reload", 200, 440)
    c.obj("r $0-out", "out_r", 10, 730)
    c.obj("outlet", "out", 10, 755)
    c.connect("out_r", 0, "out", 0)

    # the current layer: its name on $0-layersym opens every layer command
    c.at(480, 440)
    c.obj("r $0-layersym", "lay_sym_r")
    c.obj("t b", "lay_b")
    c.msg("1", "lay_one")
    c.chain("lay_sym_r", "lay_b", "lay_one")
    for sel, key in (("bend", "cb"), ("restore", "cr"), ("get_weights", "cg"), ("set_weights", "cs"),
                     ("layer_stats", "cl"), ("channels", "cc")):
        layer_command(c, sel, key)

    # info inlet: layers -> count, slider range, names; public <prefix>
    c.at(10, 470)
    c.obj("route layers public attributes layer_stats channels morph", "route")
    c.connect("in_info", 0, "route", 0)
    c.obj("s $0-public", "route_pub", 170, 495)
    c.connect("route", 1, "route_pub", 0)
    c.obj("t a a", "lay_t")
    c.connect("route", 0, "lay_t", 0)
    c.obj("s $0-names", "names_s", 100, 520)
    c.connect("lay_t", 1, "names_s", 0)
    c.obj("list length", "lay_n")
    c.connect("lay_t", 0, "lay_n", 0)
    c.obj("t f f f", "lay_nt")
    c.connect("lay_n", 0, "lay_nt", 0)
    c.msg("; $0-count $1", "count_ui", 100, 570)
    c.connect("lay_nt", 1, "count_ui", 0)
    c.obj("- 1", "lay_m1")
    c.connect("lay_nt", 0, "lay_m1", 0)
    c.msg("; $0-layer range 0 $1; $0-layer set 0; $0-select 0", "lay_ui")
    c.connect("lay_m1", 0, "lay_ui", 0)

    # Init, Reload (button or right inlet), Enable, PLOT, the model panels
    c.at(200, 470)
    c.msg("bang, layers", "init_m")      # bang: the reply 'attributes ...' shows the rows
    c.connect("init", 0, "init_m", 0)
    c.obj("s $0-out", "init_s")
    c.connect("init_m", 0, "init_s", 0)
    c.obj("t b b", "reload_t")
    c.connect("reload", 0, "reload_t", 0)
    c.connect("in_reload", 0, "reload_t", 0)
    c.msg("reload", "reload_m")
    c.connect("reload_t", 1, "reload_m", 0)
    c.connect("reload_m", 0, "init_s", 0)
    c.connect("reload_t", 0, "init_m", 0)
    c.msg("enable $1", "enable_m")
    c.connect("enable", 0, "enable_m", 0)
    c.connect("enable_m", 0, "init_s", 0)
    c.msg("; $0-w vis $1", "plot_m")
    c.connect("plot", 0, "plot_m", 0)

    # Show: "bender: <index> <name>" for every layer
    c.at(350, 470)
    c.obj("r $0-names", "show_names_r")
    c.obj("list store", "show_names")
    c.connect("show_names_r", 0, "show_names", 1)
    c.obj("t b b", "show_t")
    c.connect("show", 0, "show_t", 0)
    c.obj("list store", "show_all")
    c.connect("show_names_r", 0, "show_all", 1)
    c.connect("show_t", 0, "show_all", 0)
    c.obj("list length", "show_len")
    c.connect("show_all", 0, "show_len", 0)
    c.obj("until", "show_u")
    c.obj("f", "show_i")
    c.obj("+ 1", "show_inc")
    c.chain("show_len", "show_u", "show_i", "show_inc")
    c.connect("show_inc", 0, "show_i", 1)
    c.msg("0", "show_zero")
    c.connect("show_t", 1, "show_zero", 0)
    c.connect("show_zero", 0, "show_i", 1)
    c.obj("t f f", "show_tf")
    c.connect("show_i", 0, "show_tf", 0)
    c.msg("get $1 1", "show_get")
    c.connect("show_tf", 0, "show_get", 0)
    c.connect("show_get", 0, "show_names", 0)
    c.obj("list prepend", "show_pre")
    c.connect("show_tf", 1, "show_pre", 1)
    c.connect("show_names", 0, "show_pre", 0)
    c.obj("print bender", "show_print")
    c.connect("show_pre", 0, "show_print", 0)

    # selecting a layer (slider or $0-select): name, reset controls, refresh
    c.at(10, 610)
    c.obj("r $0-select", "sel_r")
    c.obj("+ 0.5", "sel_round")
    c.connect("layer", 0, "sel_round", 0)
    c.connect("sel_r", 0, "sel_round", 0)
    c.obj("i", "sel_i")
    c.connect("sel_round", 0, "sel_i", 0)
    c.msg("get $1 1", "sel_get")
    c.connect("sel_i", 0, "sel_get", 0)
    c.obj("list store", "names", 150, 635)
    c.obj("r $0-names", "names_r", 150, 610)
    c.connect("names_r", 0, "names", 1)
    c.connect("sel_get", 0, "names", 0)
    c.obj("symbol", "sel_sym", 150, 660)
    c.connect("names", 0, "sel_sym", 0)
    c.obj("t b s s", "sel_t", 150, 685)
    c.connect("sel_sym", 0, "sel_t", 0)
    c.obj("s $0-layersym", "sel_lay", 300, 710)
    c.connect("sel_t", 2, "sel_lay", 0)
    c.obj("s $0-name", "sel_name", 200, 710)
    # a fixed (not learned) filterbank layer, pqmf.*, is shown as <name>_(fixed)
    c.obj("t s s", "fx_t", 1010, 600)
    c.connect("sel_t", 1, "fx_t", 0)
    c.obj("list fromsymbol", "fx_chars", 1080, 625)
    c.connect("fx_t", 1, "fx_chars", 0)
    c.obj("list split 5", "fx_split", 1080, 650)
    c.connect("fx_chars", 0, "fx_split", 0)
    c.obj("list tosymbol", "fx_head", 1080, 675)
    c.connect("fx_split", 0, "fx_head", 0)
    c.obj("sel pqmf.", "fx_sel", 1080, 700)
    c.connect("fx_head", 0, "fx_sel", 0)
    c.msg("1", "fx_1", 1080, 725)
    c.msg("0", "fx_0", 1140, 725)
    c.connect("fx_sel", 0, "fx_1", 0)
    c.connect("fx_sel", 1, "fx_0", 0)
    c.connect("fx_split", 2, "fx_0", 0)
    c.obj("spigot", "fx_yes", 1010, 775)
    c.obj("spigot 1", "fx_no", 1100, 775)
    c.obj("== 0", "fx_inv", 1140, 750)
    c.connect("fx_1", 0, "fx_yes", 1)
    c.connect("fx_0", 0, "fx_yes", 1)
    c.connect("fx_1", 0, "fx_inv", 0)
    c.connect("fx_0", 0, "fx_inv", 0)
    c.connect("fx_inv", 0, "fx_no", 1)
    c.connect("fx_t", 0, "fx_yes", 0)
    c.connect("fx_t", 0, "fx_no", 0)
    c.obj("makefilename %s_(fixed)", "fx_mark", 1010, 800)
    c.connect("fx_yes", 0, "fx_mark", 0)
    c.connect("fx_mark", 0, "sel_name", 0)
    c.connect("fx_no", 0, "sel_name", 0)
    c.msg("; $0-resetui bang; $0-refresh bang", "sel_after", 150, 735)
    c.connect("sel_t", 0, "sel_after", 0)

    # the bend controls: each move stores its value and (re)starts one debounce; when it
    # fires, the whole state goes out (offset, spread, randomize, invert, each with percent
    # and seed), so the layer is exactly what the controls show, then the graph refreshes
    c.obj(f"delay {DEBOUNCE_MS}", "debounce", 640, 560)
    c.obj("t b b b b b", "fire_all", 640, 585)
    c.connect("debounce", 0, "fire_all", 0)
    x = 640
    for k, op in enumerate(OPS):
        c.at(x, 440)
        c.obj("t b f", f"{op}_t")
        c.connect(op, 0, f"{op}_t", 0)
        c.obj(f"r $0-v-{op}", f"{op}_vr", x + 60, 465)
        c.obj(f"f {DEFAULTS[op]}", f"{op}_f", x, 615)
        c.connect(f"{op}_t", 1, f"{op}_f", 1)
        c.connect(f"{op}_vr", 0, f"{op}_f", 1)
        c.connect(f"{op}_t", 0, "debounce", 0)
        c.connect("fire_all", 4 - k, f"{op}_f", 0)
        c.obj(f"list prepend {op}", f"{op}_pre", x, 640)
        c.connect(f"{op}_f", 0, f"{op}_pre", 0)
        c.obj("s $0-fire", f"{op}_s", x, 665)
        c.connect(f"{op}_pre", 0, f"{op}_s", 0)
        x += 90
    c.msg("; $0-refresh bang", "fire_ref", 640, 690)
    c.connect("fire_all", 0, "fire_ref", 0)
    # percent and seed ride along with every bend
    c.at(1010, 440)
    c.obj("t b f", "pct_t")
    c.connect("percent", 0, "pct_t", 0)
    c.obj("r $0-v-percent", "pct_vr")
    c.obj("pack 100 0", "ps_pack")
    c.connect("pct_t", 1, "ps_pack", 0)
    c.connect("pct_vr", 0, "ps_pack", 0)
    c.connect("pct_t", 0, "debounce", 0)
    c.obj("t b b f", "seed_t", 1100, 440)
    c.connect("seed", 0, "seed_t", 0)
    c.connect("seed_t", 2, "ps_pack", 1)
    c.connect("seed_t", 1, "ps_pack", 0)
    c.connect("seed_t", 0, "debounce", 0)
    c.at(1010, 540)
    c.obj("r $0-fire", "fire_r")
    c.obj("list append 100 0", "fire_app")
    c.connect("fire_r", 0, "fire_app", 0)
    c.connect("ps_pack", 0, "fire_app", 1)
    c.obj("s $0-bend", "fire_s")
    c.connect("fire_app", 0, "fire_s", 0)

    # RES, PUSH, the controls' resting values
    c.at(480, 600)
    c.obj("t b b b", "res_t")
    c.connect("res", 0, "res_t", 0)
    c.msg("; $0-restore bang; $0-resetui bang", "res_m")
    c.connect("res_t", 1, "res_m", 0)
    c.obj("t b b b", "push_t")
    c.connect("push", 0, "push_t", 0)
    c.msg("; $0-set_weights $0-w; $0-resetui bang", "push_m")
    c.connect("push_t", 1, "push_m", 0)
    c.msg("; $0-refresh bang", "after_m")
    c.connect("res_t", 0, "after_m", 0)
    c.connect("push_t", 0, "after_m", 0)
    c.obj("r $0-resetui", "reset_r")
    reset = "; " + "; ".join(
        [f"$0-{op} set {SHOWN[op]}" for op in OPS] + ["$0-percent set 100"]
        + [f"$0-d-{op} set {SHOWN[op]}" for op in OPS if op != "invert"] + ["$0-d-percent set 100"]
        + [f"$0-v-{op} {DEFAULTS[op]}" for op in OPS] + ["$0-v-percent 100"])
    c.msg(reset, "reset_m")
    c.connect("reset_r", 0, "reset_m", 0)
    c.obj("loadbang", "lb")
    c.msg("; $0-resetui bang; $0-enable set 1; $0-plot set 1; $0-temperature set 1; "
          "$0-d-temperature set 1; $0-k set 2; $0-pct set 100", "lb_m")
    c.connect("lb", 0, "lb_m", 0)

    # refresh: the layer's weights into $0-w, then size/min/max and the graph's bounds
    c.at(480, 700)
    c.obj("r $0-refresh", "ref_r")
    c.obj("t b b", "ref_t")
    c.connect("ref_r", 0, "ref_t", 0)
    c.msg("; $0-get_weights $0-w", "ref_get")
    c.connect("ref_t", 1, "ref_get", 0)
    c.msg("; $0-layer_stats bang", "ref_stats")
    c.connect("ref_t", 0, "ref_stats", 0)
    # the reply 'layer_stats <layer> size min max mean std': the numbers, the graph's bounds
    c.at(860, 440)
    c.obj("list", "st_l")
    c.connect("route", 3, "st_l", 0)
    c.obj("list split 1", "st_split")
    c.connect("st_l", 0, "st_split", 0)
    c.obj("t a a", "st_t")
    c.connect("st_split", 1, "st_t", 0)
    c.msg("; " + "; ".join(f"$0-{stat} ${k + 1}" for k, stat in enumerate(STATS)), "st_show", 860, 540)
    c.connect("st_t", 1, "st_show", 0)
    c.obj("list split 3", "st_pack", 1000, 515)
    c.connect("st_t", 0, "st_pack", 0)
    c.obj("expr $f1; $f2; if($f3 > $f2, $f3, $f2 + 1)", "st_expr", 860, 565)
    c.connect("st_pack", 0, "st_expr", 0)
    c.obj("pack f f f", "st_pack2", 860, 590)
    c.connect("st_expr", 0, "st_pack2", 0)
    c.connect("st_expr", 1, "st_pack2", 1)
    c.connect("st_expr", 2, "st_pack2", 2)
    c.obj("spigot 1", "st_fix", 960, 590)        # FIX on: the graph keeps its scale
    c.connect("st_pack2", 0, "st_fix", 0)
    c.obj("== 0", "fix_not", 1060, 565)
    c.connect("fix", 0, "fix_not", 0)
    c.connect("fix_not", 0, "st_fix", 1)
    c.msg("; $0-w bounds 0 $3 $1 $2", "st_bounds", 860, 615)
    c.connect("st_fix", 0, "st_bounds", 0)

    attribute_rows(c, 1250, 440)
    channels_wiring(c, 1250, 1400)
    morph_wiring(c, 1650, 1400)
    public_relay(c, 10, 800)
    return {"bender.pd": c.render()}
