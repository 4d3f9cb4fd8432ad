"""pd/chns0n.pd (the latent player: a latent wav or Pd array sets, D channels from the first
argument) and its wrappers pd/ch4ns0n.pd, pd/ch8ns0n.pd (see pd/chns0n-help.pd).

Inside: the panel (graph on parent), the inlet's messages sent on by name, and one subpatch
per job talking through $0- names: [pd $0-open] (a path or the file dialog -> $0-path),
[pd $0-read] (the file into the tables), [pd $0-tempo] (frames, tempo, 'loaded'),
[pd $0-clock] (the frame index, loop boundaries), [pd $0-scope], [pd $0-sets] (array sets),
[pd $0-setup] (at load: the D tables, the reader, the scope's size, the label) and
[pd $0-name] (the public name)."""

from .canvas import Canvas, esc
from .bender import public_relay

W, H = 300, 178
SCOPE = 32          # scope points per channel
RATIO = 2048        # samples per latent frame
CW = 7              # Pd's character width at font size 12


def col(g: Canvas, x: int, y: int, *items: tuple[str, str, str]) -> None:
    """Objects (kind 'obj' or 'msg', text, name) one under the other from (x, y), 30 px apart,
    each into the next."""
    for i, (kind, text, name) in enumerate(items):
        (g.msg if kind == "msg" else g.obj)(text, name, x, y + 30 * i)
        if i:
            g.connect(items[i - 1][2], 0, name, 0)


def _send_name(c: Canvas, key: str, name: str) -> None:
    """Give the IEM GUI `key` (bng, tgl) the send name `name` (Canvas writes 'empty')."""
    i = c.names[key]
    c.items[i] = c.items[i].replace(" empty ", f" {esc(name)} ", 1)


def chns0n() -> str:
    c = Canvas(1000, 700)
    c.cnv(0, 0, W, H, "chns0n", "#d8e8dc", fs=14, rcv="$0-panel")   # label: ch<D>ns0n at load
    c.bng(8, 24, "$0-load", "Load", "load")
    _send_name(c, "load", "$0-dialog")
    c.symbolatom(70, 25, 26, "$0-file")
    c.tgl(8, 52, "$0-render", "Render", "render")
    _send_name(c, "render", "$0-rendering")
    c.floatatom(90, 53, 5, "$0-frames", "frames", pos=1)
    c.floatatom(180, 53, 5, "$0-frame", "frame", pos=1)
    c.floatatom(8, 78, 7, "$0-bpm", "bpm", pos=1)
    c.floatatom(120, 78, 7, "$0-double", "x2", pos=1)
    c.floatatom(200, 78, 5, "$0-seconds", "s", pos=1)
    c.graph(8, 100, "$0-scope", 256, 284, 72, -3, 3, flags=8)
    c.gop(W, H + 1)

    c.text(10, 200, "inlet: open <file> | arrays <name> | now | loop <frames> | render 0/1 | "
                    "bang (file dialog) | loops <n> | beats <n> | public <name>. left outlet: the latent "
                    "frames (D channels in one signal). right outlet: loaded <frames> <bpm> "
                    "<double bpm> | loop <n>", 70)
    # each message goes on by name (the same names as the public name's)
    c.obj("inlet", "in", 10, 280)
    sels = ("open", "render", "public", "dialog", "loops", "arrays", "now", "loop", "beats")
    c.obj("route open render public bang loops arrays now loop beats", "route", 10, 305)
    c.connect("in", 0, "route", 0)
    step = (CW * len("route open render public bang loops arrays now loop beats") + 4 - 7) / len(sels)
    for k, sel in enumerate(sels):        # rightmost highest: no cord crosses a box
        c.obj(f"s $0-{sel}", f"{sel}_s", 10 + round(step * k), 340 + 25 * (len(sels) - 1 - k))
        c.connect("route", k, f"{sel}_s", 0)
    # the jobs
    for k, (title, sub) in enumerate((("$0-open", open_path()), ("$0-read", read_file()),
                                      ("$0-tempo", tempo()), ("$0-clock", clock()),
                                      ("$0-scope", scope()), ("$0-sets", array_sets()),
                                      ("$0-setup", setup()), ("$0-name", name()))):
        c.sub(400 + 150 * (k % 4), 290 + 40 * (k // 4), title, sub)
    # the outlets: the tables read at the frame index, the messages
    reader = Canvas(450, 200, name="$0-reader")    # [tabread~ <D tables>] is made at load
    reader.obj("r $0-idx", x=10, y=10)
    reader.obj("sig~", x=10, y=40)
    reader.obj("outlet~", x=10, y=100)
    reader.connect("_0", 0, "_1", 0)
    c.sub(400, 600, "$0-reader", reader, "read")
    c.obj("outlet~", "out", 400, 640)
    c.connect("read", 0, "out", 0)
    c.obj("r $0-info", "info_r", 600, 600)
    c.obj("outlet", "info", 600, 640)
    c.connect("info_r", 0, "info", 0)
    return c.render()



def open_path() -> Canvas:
    """`open <file>` (relative: to the top patch's folder) or the file dialog -> $0-path."""
    g = Canvas(520, 660, name="$0-open")
    g.text(10, 10, "open <file>: a relative path is in the top patch's folder")
    col(g, 10, 35, ("obj", "r $0-open", "op_r"), ("obj", "list", "op_l"), ("obj", "symbol", "op_sym"),
        ("obj", "t s s", "op_t"))
    col(g, 60, 155, ("obj", "list fromsymbol", "op_chars"), ("obj", "list split 1", "op_first"),
        ("obj", "== 47", "op_isabs"))                       # '/' is 47: absolute
    g.connect("op_t", 1, "op_chars", 0)
    col(g, 10, 245, ("obj", "pack s f", "op_pk"), ("msg", "$2 $1", "op_swap"), ("obj", "route 0 1", "op_route"))
    g.connect("op_t", 0, "op_pk", 0)
    g.connect("op_isabs", 0, "op_pk", 1)
    col(g, 120, 335, ("obj", "symbol", "op_abs"), ("obj", "s $0-path", "op_abs_s"))
    g.connect("op_route", 1, "op_abs", 0)
    col(g, 10, 335, ("obj", "symbol", "op_relsym"), ("obj", "t b s", "op_rel"))
    g.connect("op_route", 0, "op_relsym", 0)
    col(g, 10, 395, ("msg", "dir 99", "op_dir"), ("obj", "pdcontrol", "op_ctl"),
        ("obj", "makefilename %s/", "op_slash"), ("obj", "list fromsymbol", "op_dchars"))
    g.connect("op_rel", 0, "op_dir", 0)
    g.obj("list fromsymbol", "op_pchars", 130, 395)
    g.connect("op_rel", 1, "op_pchars", 0)
    col(g, 60, 515, ("obj", "list append", "op_join"), ("obj", "list tosymbol", "op_sym2"),
        ("obj", "s $0-path", "op_s"))
    g.connect("op_dchars", 0, "op_join", 0)
    g.connect("op_pchars", 0, "op_join", 1)
    g.text(330, 60, "the file dialog")
    col(g, 330, 85, ("obj", "r $0-dialog", "dl_r"), ("obj", "openpanel", "dl_panel"), ("obj", "s $0-path", "dl_s"))
    return g


def read_file() -> Canvas:
    """$0-path: the file read into the D tables (soundfiler -resize); its name shown, its
    channels checked; then $0-opened, $0-flen (frames, for [pd $0-tempo]) and $0-len."""
    g = Canvas(520, 520, name="$0-read")
    g.text(10, 10, "read the file into the tables")
    col(g, 10, 35, ("obj", "r $0-path", "rd_r"), ("obj", "t s s", "rd_t"))
    # the file's name (not its folder) in the panel
    col(g, 150, 95, ("obj", "file splitname", "fn"), ("obj", "list split 1", "fn_l"))
    g.connect("rd_t", 1, "fn", 0)
    g.obj("symbol", "fn_s", 180, 155)
    g.connect("fn_l", 1, "fn_s", 0)
    g.obj("s $0-file", "fn_show", 250, 185)
    g.connect("fn_s", 0, "fn_show", 0)
    g.connect("fn", 1, "fn_show", 0)
    g.obj("r $0-names", "rd_names", 100, 185)
    col(g, 10, 215, ("obj", "list append", "rd_app"), ("obj", "list prepend read -resize", "rd_pre"),
        ("obj", "list trim", "rd_trim"), ("obj", "soundfiler", "sf"))
    g.connect("rd_t", 0, "rd_app", 0)
    g.connect("rd_names", 0, "rd_app", 1)
    # its channels against D: one line when they differ
    col(g, 150, 335, ("obj", "list split 2", "ch_info"))
    g.connect("sf", 1, "ch_info", 0)
    col(g, 190, 365, ("obj", "list split 1", "ch_n"), ("obj", "t f b", "ch_t"))
    g.connect("ch_info", 1, "ch_n", 0)
    g.obj("v $0-dims", "ch_dims", 250, 425)
    g.connect("ch_t", 1, "ch_dims", 0)
    col(g, 190, 455, ("obj", "pack f f", "ch_pack"), ("obj", "t l l", "ch_tl"))
    g.connect("ch_t", 0, "ch_pack", 0)
    g.connect("ch_dims", 0, "ch_pack", 1)
    g.obj("expr $f1 != $f2", "ch_ne", 230, 515)
    g.connect("ch_tl", 1, "ch_ne", 0)
    col(g, 190, 545, ("obj", "spigot", "ch_sp"), ("msg", "file has $1 channels - this player $2", "ch_msg"),
        ("obj", "print chns0n", "ch_print"))
    g.connect("ch_tl", 0, "ch_sp", 0)
    g.connect("ch_ne", 0, "ch_sp", 1)
    # read: array sets off, then frames and tempo (and 'loaded'), then the loop length
    g.obj("t f f b", "sf_t", 10, 365)
    g.connect("sf", 0, "sf_t", 0)
    g.obj("s $0-opened", "sf_opened", 70, 395)
    g.connect("sf_t", 2, "sf_opened", 0)
    g.obj("s $0-flen", "sf_flen", 40, 425)
    g.connect("sf_t", 1, "sf_flen", 0)
    g.obj("s $0-len", "sf_len", 10, 455)
    g.connect("sf_t", 0, "sf_len", 0)
    return g


def tempo() -> Canvas:
    """The panel's frames, BPM, x2, seconds for one loop: of a file ($0-flen, divided by
    `loops <n>`), then 'loaded <frames> <bpm> <double bpm>' out, or of an array set's loop
    ($0-alen, no 'loaded'). The BPM counts `beats <n>` in one loop ($0-beats; 0, the default:
    about 2 a second, the nearest whole number), from the next loop length on."""
    g = Canvas(520, 660, name="$0-tempo")
    g.text(10, 10, "frames and tempo of one loop")
    g.obj("r $0-flen", "fl_r", 10, 35)
    g.obj("r $0-loops", "loops_r", 230, 35)         # 'loops <n>': the file holds n loops
    g.obj("expr $f1 / max(int($f2), 1)", "per_loop", 10, 65)
    g.connect("fl_r", 0, "per_loop", 0)
    g.connect("loops_r", 0, "per_loop", 1)
    g.obj("s $0-oneloop", "per_s", 10, 95)
    g.connect("per_loop", 0, "per_s", 0)
    # an array set's loop: the same without 'loaded' (the gate shut meanwhile)
    col(g, 330, 35, ("obj", "r $0-alen", "al_r"), ("obj", "t b f b", "al_t"))
    col(g, 380, 95, ("msg", "0", "al_shut"), ("obj", "s $0-gate", "al_shut_s"))
    g.connect("al_t", 2, "al_shut", 0)
    g.obj("s $0-oneloop", "al_s", 350, 155)
    g.connect("al_t", 1, "al_s", 0)
    col(g, 330, 185, ("msg", "1", "al_open"), ("obj", "s $0-gate", "al_open_s"))
    g.connect("al_t", 0, "al_open", 0)
    col(g, 10, 135, ("obj", "r $0-oneloop", "ol_r"), ("obj", "t f f", "ol_t"))
    g.obj("s $0-frames", "frames_s", 60, 195)
    g.connect("ol_t", 1, "frames_s", 0)
    g.obj("t f f b", "tp_t", 10, 225)
    g.connect("ol_t", 0, "tp_t", 0)
    g.obj("samplerate~", "sr", 130, 255)
    g.connect("tp_t", 2, "sr", 0)
    g.obj("s $0-lframes", "lf_s", 60, 285)
    g.connect("tp_t", 1, "lf_s", 0)
    beats = f"if($f3 > 0, $f3, max(1, int(2 * $f1 * {RATIO} / $f2 + 0.5)))"
    g.obj(f"expr 60 * $f2 / {RATIO} / max($f1, 1) * {beats}; "
          f"120 * $f2 / {RATIO} / max($f1, 1) * {beats}; $f1 * {RATIO} / $f2", "tempo", 10, 315)
    g.connect("tp_t", 0, "tempo", 0)
    g.connect("sr", 0, "tempo", 1)
    g.obj("r $0-beats", "beats_r", 380, 255)      # cold: the next loop length shows it
    g.connect("beats_r", 0, "tempo", 2)
    g.obj("s $0-seconds", "sec_s", 240, 400)
    g.connect("tempo", 2, "sec_s", 0)
    # frames, bpm, double: shown, and (after a file) 'loaded ...' out
    g.obj("list append", "ld_app", 10, 400)
    g.connect("tempo", 0, "ld_app", 0)
    g.connect("tempo", 1, "ld_app", 1)
    g.obj("r $0-lframes", "lf_r", 110, 400)
    g.obj("list prepend", "ld_pre", 10, 430)
    g.connect("ld_app", 0, "ld_pre", 0)
    g.connect("lf_r", 0, "ld_pre", 1)
    g.obj("t a a", "ld_t", 10, 460)
    g.connect("ld_pre", 0, "ld_t", 0)
    g.obj("unpack f f f", "ld_un", 100, 490)
    g.connect("ld_t", 1, "ld_un", 0)
    g.obj("s $0-double", "dbl_s", 220, 520)
    g.connect("ld_un", 2, "dbl_s", 0)
    g.obj("s $0-bpm", "bpm_s", 140, 550)
    g.connect("ld_un", 1, "bpm_s", 0)
    g.obj("r $0-gate", "gate_r", 50, 520)
    g.obj("spigot 1", "gate", 10, 550)
    g.connect("ld_t", 0, "gate", 0)
    g.connect("gate_r", 0, "gate", 1)
    col(g, 10, 580, ("msg", "loaded $1 $2 $3", "ld_msg"), ("obj", "s $0-info", "ld_s"))
    g.connect("gate", 0, "ld_msg", 0)
    return g


def clock() -> Canvas:
    """Render: one frame every 2048 samples from frame 0 ($0-idx for the reader, $0-frame and
    $0-shown for the panel); frame 0 is a loop boundary ($0-bound), sent before the frame
    goes out, so [pd $0-sets] reads a set there and the loop length it sets ($0-len) counts
    from that frame on."""
    g = Canvas(520, 740, name="$0-clock")
    g.text(10, 10, "the frame clock")
    col(g, 10, 35, ("obj", "r $0-rendering", "rn_r"), ("obj", "t f f", "rn_t"))
    g.obj("v $0-on", "on_v", 60, 95)                 # rendering or not, for [pd $0-sets]
    g.connect("rn_t", 1, "on_v", 0)
    g.obj("t f b", "ren_t", 10, 125)
    g.connect("rn_t", 0, "ren_t", 0)
    g.obj("t b b", "ren_tb", 60, 155)
    g.connect("ren_t", 1, "ren_tb", 0)
    g.obj("s $0-restart", "restart_s", 110, 185)      # the loop count starts again
    g.connect("ren_tb", 1, "restart_s", 0)
    col(g, 60, 215, ("msg", "0", "ren_zero"), ("obj", "s $0-next", "ren_next"))
    g.connect("ren_tb", 0, "ren_zero", 0)
    g.obj(f"metro {RATIO} 1 samp", "metro", 10, 275)
    g.connect("ren_t", 0, "metro", 0)
    g.obj("r $0-next", "next_r", 40, 305)            # the next frame's count
    g.obj("f", "cnt", 10, 335)
    g.connect("metro", 0, "cnt", 0)
    g.connect("next_r", 0, "cnt", 1)
    g.obj("r $0-len", "len_r1", 60, 335)
    g.obj("mod 100", "cnt_clip", 10, 365)          # a new, shorter loop while playing
    g.connect("cnt", 0, "cnt_clip", 0)
    g.connect("len_r1", 0, "cnt_clip", 1)
    g.obj("t f f", "bnd_t", 10, 395)
    g.connect("cnt_clip", 0, "bnd_t", 0)
    col(g, 60, 425, ("obj", "sel 0", "bnd_sel"), ("obj", "s $0-bound", "bnd_s"))
    g.connect("bnd_t", 1, "bnd_sel", 0)
    g.obj("t f f", "cnt_t", 10, 485)
    g.connect("bnd_t", 0, "cnt_t", 0)
    g.obj("r $0-len", "len_r2", 110, 515)
    col(g, 60, 515, ("obj", "+ 1", "cnt_inc"), ("obj", "mod 100", "cnt_mod"), ("obj", "s $0-next", "cnt_next"))
    g.connect("cnt_t", 1, "cnt_inc", 0)
    g.connect("len_r2", 0, "cnt_mod", 1)
    g.obj("t f f f", "frame_t", 10, 605)
    g.connect("cnt_t", 0, "frame_t", 0)
    g.obj("s $0-idx", "idx", 110, 635)
    g.connect("frame_t", 2, "idx", 0)
    g.obj("s $0-frame", "frame_s", 40, 665)
    g.connect("frame_t", 1, "frame_s", 0)
    g.obj("s $0-shown", "shown_s", 10, 695)
    g.connect("frame_t", 0, "shown_s", 0)
    return g


def scope() -> Canvas:
    """The scope: each frame's value of each channel, SCOPE points per channel (the last
    SCOPE frames, written round)."""
    g = Canvas(520, 700, name="$0-scope")
    g.text(10, 10, f"the scope: the last {SCOPE} frames of each channel")
    col(g, 10, 35, ("obj", "r $0-shown", "sc_r"), ("obj", "t b f", "sc_t"))
    g.obj("v $0-scframe", "sc_frame", 60, 95)
    g.connect("sc_t", 1, "sc_frame", 0)
    col(g, 10, 125, ("obj", "v $0-scpos", "sc_pos"), ("obj", "t f f", "sc_pt"))
    g.connect("sc_t", 0, "sc_pos", 0)
    col(g, 60, 185, ("obj", "+ 1", "sc_inc"), ("obj", f"mod {SCOPE}", "sc_mod"), ("obj", "v $0-scpos", "sc_pos2"))
    g.connect("sc_pt", 1, "sc_inc", 0)
    g.obj("t b b f", "sc_t2", 10, 275)
    g.connect("sc_pt", 0, "sc_t2", 0)
    g.obj("v $0-scp", "sc_p", 80, 305)
    g.connect("sc_t2", 2, "sc_p", 0)
    col(g, 40, 335, ("msg", "0", "sc_c0"), ("obj", "v $0-scc", "sc_c0v"))
    g.connect("sc_t2", 1, "sc_c0", 0)
    col(g, 10, 395, ("obj", "v $0-dims", "sc_d"), ("obj", "until", "sc_u"), ("obj", "v $0-scc", "sc_c"),
        ("obj", "t b f f f", "sc_ct"))
    g.connect("sc_t2", 0, "sc_d", 0)
    col(g, 270, 515, ("obj", "+ 1", "sc_cinc"), ("obj", "v $0-scc", "sc_cset"))
    g.connect("sc_ct", 3, "sc_cinc", 0)
    col(g, 110, 545, ("obj", "makefilename $0-z%d", "sc_name"), ("obj", "s $0-scname", "sc_name_s"))
    g.connect("sc_ct", 2, "sc_name", 0)
    g.obj("t f b", "sc_ot", 60, 575)
    g.connect("sc_ct", 1, "sc_ot", 0)
    g.obj("v $0-scp", "sc_p2", 110, 605)
    g.connect("sc_ot", 1, "sc_p2", 0)
    g.obj(f"expr $f1 * {SCOPE} + $f2", "sc_at", 60, 635)
    g.connect("sc_ot", 0, "sc_at", 0)
    g.connect("sc_p2", 0, "sc_at", 1)
    g.obj("s $0-scat", "sc_at_s", 60, 665)
    g.connect("sc_at", 0, "sc_at_s", 0)
    g.obj("v $0-scframe", "sc_k", 10, 695)
    g.connect("sc_ct", 0, "sc_k", 0)
    g.obj("r $0-scname", "sc_name_r", 150, 695)
    g.obj("array get 0 1", "sc_get", 10, 725)
    g.connect("sc_k", 0, "sc_get", 0)
    g.connect("sc_name_r", 0, "sc_get", 2)
    g.obj("r $0-scat", "sc_at_r", 150, 725)
    g.obj("array set $0-scope", "sc_set", 10, 755)
    g.connect("sc_get", 0, "sc_set", 0)
    g.connect("sc_at_r", 0, "sc_set", 1)
    return g


def array_sets() -> Canvas:
    """[pd $0-sets]: the array sets. `arrays <name>` is checked at once; a good set is the one
    to read ($0-want): at the next loop boundary ($0-bound, frame 0), at once when not
    rendering or on `now`. Reading copies the arrays <name>-0 .. <name>-(D-1) into the tables
    the player reads ($0-z<k>, each resized to its source) and sets the loop length ($0-len):
    `loop <frames>`, or with `loop 0` the size of <name>-0. The set playing is read again at
    each boundary (what was written into it since is heard from there) and `loop <n>` goes
    out ($0-info, n from 0 at Render) while sets play ($0-mode). A file read ($0-opened)
    stops both; a set gone at a boundary is no longer read ($0-follow), its last reading
    plays on."""
    g = Canvas(1240, 800, name="$0-sets")

    # `arrays <name>`: checked, a good one is the set to read, at once when not rendering
    g.text(10, 10, "arrays <name>")
    col(g, 10, 35, ("obj", "r $0-arrays", "ar_r"), ("obj", "symbol", "ar_sym"), ("obj", "t s s", "ar_t"))
    g.obj("s $0-chk", "ar_chk", 60, 125)
    g.connect("ar_t", 1, "ar_chk", 0)
    g.obj("r $0-good", "ar_good", 80, 155)
    col(g, 10, 185, ("obj", "spigot", "ar_sp"), ("obj", "t b s b", "ar_ok"))
    g.connect("ar_t", 0, "ar_sp", 0)
    g.connect("ar_good", 0, "ar_sp", 1)
    col(g, 120, 245, ("obj", "list prepend $0", "ar_id"), ("msg", "; $1-follow 1; $1-mode 1", "ar_on"))
    g.connect("ar_ok", 2, "ar_id", 0)
    g.obj("s $0-want", "ar_want", 40, 275)
    g.connect("ar_ok", 1, "ar_want", 0)
    col(g, 10, 305, ("obj", "v $0-on", "ar_idle"), ("obj", "sel 0", "ar_sel"), ("obj", "s $0-now", "ar_now"))
    g.connect("ar_ok", 0, "ar_idle", 0)
    # `loop <frames>`: the loop length from the next reading on (0: the set's length)
    g.text(10, 410, "loop <frames>")
    col(g, 10, 435, ("obj", "r $0-loop", "ls_r"), ("obj", "expr max(int($f1), 0)", "ls_e"),
        ("obj", "t b f", "ls_t"))
    g.obj("s $0-looplen", "ls_s", 60, 525)
    g.connect("ls_t", 1, "ls_s", 0)
    col(g, 10, 555, ("obj", "v $0-on", "ls_idle"), ("obj", "sel 0", "ls_sel"), ("obj", "s $0-now", "ls_now"))
    g.connect("ls_t", 0, "ls_idle", 0)
    # a file read: no set to read, no loop messages
    g.text(10, 655, "a file read")
    col(g, 10, 680, ("obj", "r $0-opened", "op_r"), ("obj", "list prepend $0", "op_id"),
        ("msg", "; $1-follow 0; $1-mode 0", "op_off"))

    # reading the set: on a boundary, `now`, or when idle, while one is to be read
    g.text(340, 10, "read the set")
    col(g, 340, 35, ("obj", "r $0-now", "tk_r"), ("obj", "spigot", "tk_sp"), ("obj", "symbol", "tk_name"),
        ("obj", "t s b s", "tk_t"))
    g.obj("r $0-follow", "tk_follow", 420, 35)
    g.connect("tk_follow", 0, "tk_sp", 1)
    g.obj("r $0-want", "tk_want", 420, 65)
    g.connect("tk_want", 0, "tk_name", 1)
    g.obj("s $0-chk", "tk_chk", 420, 155)
    g.connect("tk_t", 2, "tk_chk", 0)
    col(g, 360, 185, ("obj", "v $0-good", "tk_v"), ("obj", "s $0-follow", "tk_stop"))   # gone: stop
    g.connect("tk_t", 1, "tk_v", 0)
    g.obj("r $0-good", "tk_good", 440, 245)
    col(g, 340, 275, ("obj", "spigot", "tk_ok"), ("obj", "t b s s", "tk_go"))
    g.connect("tk_t", 0, "tk_ok", 0)
    g.connect("tk_good", 0, "tk_ok", 1)
    g.obj("s $0-copy", "tk_copy", 420, 335)
    g.connect("tk_go", 2, "tk_copy", 0)
    col(g, 370, 365, ("obj", "makefilename %s-*", "tk_show"), ("obj", "s $0-file", "tk_file"))  # <name>-*
    g.connect("tk_go", 1, "tk_show", 0)
    col(g, 340, 425, ("obj", "array size $0-z0", "fin_sz"), ("obj", "expr if($f2 > 0, $f2, $f1)", "fin_len"),
        ("obj", "t f f", "fin_t"))
    g.connect("tk_go", 0, "fin_sz", 0)
    g.obj("r $0-looplen", "fin_ls", 470, 425)
    g.connect("fin_ls", 0, "fin_len", 1)
    g.obj("s $0-alen", "fin_show", 390, 515)
    g.connect("fin_t", 1, "fin_show", 0)
    g.obj("s $0-len", "fin_s", 340, 545)
    g.connect("fin_t", 0, "fin_s", 0)
    # at each boundary: read the set, then `loop <n>` while sets play, n from 0 at Render
    g.text(170, 410, "a boundary")
    col(g, 170, 435, ("obj", "r $0-bound", "bd_r"), ("obj", "t b b", "bd_t"))
    g.obj("s $0-now", "bd_now", 220, 495)
    g.connect("bd_t", 1, "bd_now", 0)
    col(g, 170, 525, ("obj", "v $0-count", "lc_get"), ("obj", "t f f", "lc_t"))
    g.connect("bd_t", 0, "lc_get", 0)
    col(g, 220, 585, ("obj", "+ 1", "lc_inc"), ("obj", "v $0-count", "lc_set"))
    g.connect("lc_t", 1, "lc_inc", 0)
    g.obj("r $0-mode", "lc_mode", 260, 645)
    col(g, 170, 675, ("obj", "spigot", "lc_sp"), ("msg", "loop $1", "lc_msg"), ("obj", "s $0-info", "lc_s"))
    g.connect("lc_t", 0, "lc_sp", 0)
    g.connect("lc_mode", 0, "lc_sp", 1)
    g.text(340, 590, "Render")
    col(g, 340, 615, ("obj", "r $0-restart", "lc_r"), ("msg", "0", "lc_zero"), ("obj", "v $0-count", "lc_reset"))

    # the check: are the arrays <name>-0 .. <name>-(D-1) there? Probed in order up to the
    # first missing one (which Pd's [array size] reports too), $0-good gets 1 or 0, and a
    # missing array is said in one line
    g.text(600, 10, "check")
    col(g, 600, 35, ("obj", "r $0-chk", "ck_r"), ("obj", "t b b b s", "ck_t"))
    g.obj("s $0-ckname", "ck_name_s", 690, 95)
    g.connect("ck_t", 3, "ck_name_s", 0)
    g.obj("s $0-ckreset", "ck_reset_s", 660, 125)
    g.connect("ck_t", 2, "ck_reset_s", 0)
    g.obj("s $0-ckloop", "ck_loop_s", 630, 155)
    g.connect("ck_t", 1, "ck_loop_s", 0)
    col(g, 600, 185, ("obj", "v $0-found", "ck_found"), ("obj", "t f b", "ck_ft"))
    g.connect("ck_t", 0, "ck_found", 0)
    g.obj("v $0-dims", "ck_dims", 640, 245)
    g.connect("ck_ft", 1, "ck_dims", 0)
    col(g, 600, 275, ("obj", "==", "ck_eq"), ("obj", "t f f f", "ck_ans"))
    g.connect("ck_ft", 0, "ck_eq", 0)
    g.connect("ck_dims", 0, "ck_eq", 1)
    g.obj("s $0-good", "ck_good_s", 680, 335)
    g.connect("ck_ans", 2, "ck_good_s", 0)
    g.obj("v $0-good", "ck_good_v", 630, 365)
    g.connect("ck_ans", 1, "ck_good_v", 0)
    col(g, 600, 395, ("obj", "sel 0", "ck_bad"), ("obj", "t b b", "ck_say"))
    g.connect("ck_ans", 0, "ck_bad", 0)
    g.obj("v $0-found", "ck_miss", 690, 455)
    g.connect("ck_say", 1, "ck_miss", 0)
    col(g, 600, 485, ("obj", "v $0-dims", "ck_d"), ("obj", "t f f", "ck_dt"))
    g.connect("ck_say", 0, "ck_d", 0)
    g.obj("- 1", "ck_last", 640, 545)
    g.connect("ck_dt", 1, "ck_last", 0)
    g.obj("pack f f f", "ck_nums", 600, 575)           # D, D-1, the first missing one
    g.connect("ck_dt", 0, "ck_nums", 0)
    g.connect("ck_last", 0, "ck_nums", 1)
    g.connect("ck_miss", 0, "ck_nums", 2)
    g.obj("r $0-ckname", "ck_name_r", 700, 575)
    g.obj("list prepend", "ck_pre", 600, 605)
    g.connect("ck_nums", 0, "ck_pre", 0)
    g.connect("ck_name_r", 0, "ck_pre", 1)
    g.msg("arrays $1: no array $1-$4 (this player reads $2: $1-0 .. $1-$3)", "ck_msg", 600, 635)
    g.connect("ck_pre", 0, "ck_msg", 0)
    g.obj("print chns0n", "ck_print", 600, 685)
    g.connect("ck_msg", 0, "ck_print", 0)
    # ... the probes: while none is missing, <name>-<found> is probed and counted
    g.text(800, 10, "probe")
    col(g, 800, 35, ("obj", "r $0-ckloop", "pr_r"), ("obj", "v $0-dims", "pr_d"), ("obj", "until", "pr_u"),
        ("obj", "spigot", "pr_sp"), ("obj", "v $0-found", "pr_k"), ("obj", "t b b f", "pr_t"))
    g.obj("r $0-ckopen", "pr_open", 860, 95)
    g.connect("pr_open", 0, "pr_sp", 1)
    g.obj("r $0-ckname", "pr_name", 980, 205)
    col(g, 920, 235, ("obj", "pack f s", "pr_pk"), ("msg", "symbol $2-$1", "pr_nm"))
    g.connect("pr_t", 2, "pr_pk", 0)
    g.connect("pr_name", 0, "pr_pk", 1)
    col(g, 830, 235, ("msg", "0", "pr_shut"), ("obj", "s $0-ckopen", "pr_shut_s"))   # missing unless...
    g.connect("pr_t", 1, "pr_shut", 0)
    col(g, 800, 325, ("obj", "array size", "pr_sz"), ("obj", "t b b", "pr_there"))
    g.connect("pr_t", 0, "pr_sz", 0)
    g.connect("pr_nm", 0, "pr_sz", 1)
    col(g, 840, 385, ("msg", "1", "pr_again"), ("obj", "s $0-ckopen", "pr_again_s"))  # ... it answers
    g.connect("pr_there", 1, "pr_again", 0)
    col(g, 800, 445, ("obj", "v $0-found", "pr_fget"), ("obj", "+ 1", "pr_fadd"), ("obj", "v $0-found", "pr_fset"))
    g.connect("pr_there", 0, "pr_fget", 0)
    g.text(920, 330, "reset")
    col(g, 920, 355, ("obj", "r $0-ckreset", "rs_r"), ("obj", "t b b", "rs_t"))
    col(g, 970, 415, ("msg", "1", "rs_open"), ("obj", "s $0-ckopen", "rs_open_s"))
    g.connect("rs_t", 1, "rs_open", 0)
    col(g, 920, 445, ("msg", "0", "rs_zero"), ("obj", "v $0-found", "rs_found"))
    g.connect("rs_t", 0, "rs_zero", 0)

    # the copy: <name>-<k> into $0-z<k> (resized to it), k = 0 .. D-1
    g.text(1080, 10, "copy")
    col(g, 1080, 35, ("obj", "r $0-copy", "cp_r"), ("obj", "t b b s", "cp_t"))
    g.obj("s $0-cpname", "cp_name_s", 1160, 95)
    g.connect("cp_t", 2, "cp_name_s", 0)
    col(g, 1110, 125, ("msg", "0", "cp_k0"), ("obj", "v $0-cpk", "cp_k0v"))
    g.connect("cp_t", 1, "cp_k0", 0)
    col(g, 1080, 185, ("obj", "v $0-dims", "cp_d"), ("obj", "until", "cp_u"), ("obj", "v $0-cpk", "cp_k"),
        ("obj", "t b f f", "cp_it"))
    g.connect("cp_t", 0, "cp_d", 0)
    col(g, 1140, 305, ("obj", "makefilename $0-z%d", "cp_dn"), ("obj", "s $0-cpdst", "cp_dst_s"))
    g.connect("cp_it", 2, "cp_dn", 0)
    g.obj("r $0-cpname", "cp_name_r", 1170, 365)
    col(g, 1110, 395, ("obj", "pack f s", "cp_pk"), ("msg", "symbol $2-$1", "cp_sn"), ("obj", "t b b s", "cp_st"))
    g.connect("cp_it", 1, "cp_pk", 0)
    g.connect("cp_name_r", 0, "cp_pk", 1)
    g.obj("s $0-cpsrc", "cp_src_s", 1180, 485)
    g.connect("cp_st", 2, "cp_src_s", 0)
    g.obj("r $0-cpsrc", "cp_src_r1", 1210, 515)
    g.obj("array size", "cp_ssz", 1130, 545)
    g.connect("cp_st", 1, "cp_ssz", 0)
    g.connect("cp_src_r1", 0, "cp_ssz", 1)
    g.obj("r $0-cpdst", "cp_dst_r1", 1210, 575)
    g.obj("array size", "cp_dsz", 1130, 605)          # resized only if the size differs
    g.connect("cp_ssz", 0, "cp_dsz", 0)
    g.connect("cp_dst_r1", 0, "cp_dsz", 1)
    g.obj("r $0-cpsrc", "cp_src_r2", 1210, 605)
    g.obj("array get", "cp_get", 1110, 635)
    g.connect("cp_st", 0, "cp_get", 0)
    g.connect("cp_src_r2", 0, "cp_get", 2)
    g.obj("r $0-cpdst", "cp_dst_r2", 1210, 635)
    g.obj("array set", "cp_set", 1110, 665)
    g.connect("cp_get", 0, "cp_set", 0)
    g.connect("cp_dst_r2", 0, "cp_set", 2)
    col(g, 1080, 695, ("obj", "v $0-cpk", "cp_kget"), ("obj", "+ 1", "cp_kadd"), ("obj", "v $0-cpk", "cp_kset"))
    g.connect("cp_it", 0, "cp_kget", 0)
    return g


def setup() -> Canvas:
    """At load: D (the first argument, 8 without one) into $0-dims and the panel's label
    (ch<D>ns0n); the D tables $0-z<k> made in [pd $0-arrays] and their names ($0-names, for
    soundfiler); [tabread~ <the D tables>] made in [pd $0-reader]; the scope's size."""
    g = Canvas(800, 700, name="$0-setup")
    g.text(10, 10, "at load")
    col(g, 10, 35, ("obj", "loadbang", "lb"), ("obj", "t b b b", "lb_t"))
    # D and the label
    col(g, 560, 95, ("obj", "f $1", "dims_arg"), ("obj", "moses 1", "dims_min"), ("msg", "8", "dims_8"))
    g.connect("lb_t", 2, "dims_arg", 0)
    g.obj("t f f", "dims_t", 560, 215)                 # no argument: 8 dims
    g.connect("dims_8", 0, "dims_t", 0)
    g.connect("dims_min", 1, "dims_t", 0)
    col(g, 610, 245, ("obj", "makefilename ch%dns0n", "panel_lbl"), ("obj", "list prepend label", "panel_pre"),
        ("obj", "list trim", "panel_trim"), ("obj", "s $0-panel", "panel_s"))
    g.connect("dims_t", 1, "panel_lbl", 0)
    g.obj("v $0-dims", "dims_set", 560, 365)
    g.connect("dims_t", 0, "dims_set", 0)
    # the tables, their names, the reader
    g.obj("t b b", "tb_t", 250, 125)
    g.connect("lb_t", 1, "tb_t", 0)
    col(g, 290, 155, ("obj", "v $0-dims", "dims"), ("obj", "until", "mk_u"), ("obj", "f", "mk_i"),
        ("obj", "makefilename $0-z%d", "mk_name"), ("obj", "t s s", "mk_t"),
        ("msg", "obj 10 10 table $1", "mk_obj"), ("obj", "s pd-$0-arrays", "mk_s"))
    g.connect("tb_t", 1, "dims", 0)
    g.obj("+ 1", "mk_inc", 330, 215)
    g.connect("mk_i", 0, "mk_inc", 0)
    g.connect("mk_inc", 0, "mk_i", 1)
    col(g, 440, 305, ("msg", "append $1", "mk_app"), ("obj", "s $0-tables", "mk_app_s"))
    g.connect("mk_t", 1, "mk_app", 0)
    g.obj("r $0-tables", "mk_app_r", 300, 425)
    col(g, 250, 455, ("obj", "list store", "mk_store"), ("obj", "t a a", "names_t"))
    g.connect("tb_t", 0, "mk_store", 0)
    g.connect("mk_app_r", 0, "mk_store", 0)
    g.obj("s $0-names", "names_s", 300, 515)
    g.connect("names_t", 1, "names_s", 0)
    col(g, 250, 545, ("obj", "list prepend obj 10 70 tabread~", "set_pre"), ("obj", "list trim", "set_trim"),
        ("obj", "t b a", "set_t"))
    g.connect("names_t", 0, "set_pre", 0)
    g.obj("s pd-$0-reader", "set_s1", 300, 635)
    g.connect("set_t", 1, "set_s1", 0)
    col(g, 250, 665, ("msg", "connect 1 0 3 0, connect 3 0 2 0", "set_conn"), ("obj", "s pd-$0-reader", "set_s2"))
    g.connect("set_t", 0, "set_conn", 0)
    g.sub(560, 455, "$0-arrays", Canvas(450, 300, name="$0-arrays"))
    # the scope's size: SCOPE points per channel
    col(g, 10, 95, ("obj", "v $0-dims", "dims2"), ("obj", f"* {SCOPE}", "sc_size"),
        ("obj", "list prepend $0", "sc_id"), ("msg", "; $1-scope resize $2; $1-scope bounds 0 3 $2 -3", "sc_resize"))
    g.connect("lb_t", 0, "dims2", 0)
    return g


def name() -> Canvas:
    """The public name: `<name> <control> <value...>` reaches $0-<control>."""
    g = Canvas(500, 600, name="$0-name")
    public_relay(g, 10, 40, argpos=2)
    return g


def wrapper(dims: int) -> str:
    c = Canvas(500, 300)
    c.obj("inlet", "in", 10, 230)
    c.obj(f"chns0n {dims}", "player", 0, 0)
    c.connect("in", 0, "player", 0)
    c.obj("outlet~", "out", 10, 260)
    c.obj("outlet", "info", 150, 260)
    c.connect("player", 0, "out", 0)
    c.connect("player", 1, "info", 0)
    c.obj("loadbang", "lb", 320, 10)
    c.msg("args", "args", 320, 35)
    c.obj("pdcontrol", "ctl", 320, 60)
    c.obj("list split 1", "first", 320, 85)
    c.msg("public $1", "pub", 320, 110)
    c.chain("lb", "args", "ctl", "first", "pub")
    c.connect("pub", 0, "player", 0)
    c.gop(W, H + 1)
    return c.render()


def patches() -> dict[str, str]:
    return {"chns0n.pd": chns0n(), "ch4ns0n.pd": wrapper(4), "ch8ns0n.pd": wrapper(8)}
