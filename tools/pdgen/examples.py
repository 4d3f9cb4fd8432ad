"""pd/examples/1-bending.pd, 2-composition.pd, 3-render.pd, 4-diffusion.pd, 5-live.pd."""

from .canvas import Canvas
from .help import LH, _dac, _loop_player, wrap

LATENT_WAV = [46, 108, 97, 116, 101, 110, 116, 46, 119, 97, 118]   # ".latent.wav"
RENDER_SAMPLES = 8 * 44100
BEND = "bend decoder.net.6.weight spread 1.5 50 1"


OUT = "~/Documents/unravel"     # where the examples write (a folder the user owns)


def _head(c: Canvas) -> None:
    """[declare -path ..]: the library folder (unravel~, bender, ch8ns0n) wherever it is."""
    c.declare(c.w - 150, 10, "-path ..")


def _intro(c: Canvas, text: str, width: int = 75) -> int:
    """The example's comment at the top; returns the y below it."""
    c.text(20, 10, text, width)
    return 10 + wrap(text, width) * LH + 14


def _outdir(c: Canvas, name: str, x: int, y: int) -> str:
    """At load: make OUT/<name> ([file mkdir]); returns the object whose left outlet gives
    its absolute path."""
    c.obj("loadbang", "od_lb", x, y)
    c.msg(f"symbol {OUT}/{name}", "od_m", x, y + 25)
    c.obj("file mkdir", "od", x, y + 50)
    c.chain("od_lb", "od_m", "od")
    c.obj("print output-folder-error", "od_err", x + 90, y + 75)
    c.connect("od", 1, "od_err", 0)
    return "od"


def _quit_if_headless(c: Canvas, x: int, y: int) -> str:
    """A bang into the returned object quits Pd only when this patch has no window (pd -nogui,
    pd -batch): a musician who opened it in the GUI keeps Pd."""
    c.obj("t b", "qh_t", x, y)
    c.msg("isvisible", "qh_m", x, y + 25)
    c.obj("pdcontrol", "qh_pc", x, y + 50)
    c.obj("sel 0", "qh_sel", x, y + 75)
    c.msg("; pd dsp 0; pd quit", "qh_quit", x, y + 100)
    c.chain("qh_t", "qh_m", "qh_pc", "qh_sel", "qh_quit")
    return "qh_t"


def bending() -> str:
    c = Canvas(1000, 680)
    _head(c)
    c.text(20, 10, "1 - live network bending: the bundled loop through the default model, bent "
                   "with [bender]. Turn DSP on, click Init, pick a decoder layer, move the sliders.", 70)
    src = _loop_player(c, 20, 70, "loop.wav")
    c.obj("r $0-u", "r", 200, 180)           # Bender's messages and save, around the panel
    c.obj("unravel~ default forward", "u", 20, 215)
    c.connect(src, 0, "u", 0)
    c.connect("r", 0, "u", 0)
    c.obj("bender", "b", 20, 250)
    c.connect("u", 1, "b", 0)
    c.obj("s $0-u", "b_s", 20, 630)          # below [bender]'s panel (250 + 373)
    c.connect("b", 0, "b_s", 0)
    _dac(c, "u", 690, 240)         # right of the panel (up to 660 wide)
    c.msg(f"save {OUT}/1-bending/bent.ts", "save", 690, 310)
    c.obj("s $0-u", "save_s", 690, 340)
    c.connect("save", 0, "save_s", 0)
    c.text(690, 375, "save: keep the bent model (a TorchScript file nn~ loads too). An existing "
                     "file is kept: add 'force' to replace it.", 40)
    _outdir(c, "1-bending", 690, 470)
    return c.render()


def _chain(quit_on_error: bool = False) -> Canvas:
    """[pd compose]: inlets: bang (go), [unravel~]'s info, the output folder (symbol);
    outlets: messages for [unravel~], messages for [ch8ns0n]. Encode the loop (unless
    <folder>/loop.npy is there already: it is reused, never overwritten), generate a fibo
    pattern (a new file name each time), open the generated latent wav in the player.
    Laid out so that no cord crosses a box: the two ways to the npy file meet at
    [r $0-generate]."""
    c = Canvas(1000, 560, name="compose")
    c.obj("inlet", "go", 10, 10)
    c.obj("inlet", "info", 400, 10)
    c.obj("inlet", "dir", 600, 10)
    # go: <folder>/loop.npy there -> generate from it, else encode the loop into <folder>
    c.obj("symbol", "outdir", 10, 60)
    c.connect("go", 0, "outdir", 0)
    c.connect("dir", 0, "outdir", 1)
    c.obj("t s s", "od_t", 10, 85)
    c.connect("outdir", 0, "od_t", 0)
    c.obj("s $0-dir", "od_s", 70, 110)
    c.connect("od_t", 1, "od_s", 0)
    c.obj("makefilename %s/loop.npy", "npy", 10, 135)
    c.connect("od_t", 0, "npy", 0)
    c.obj("t s s", "npy_t", 10, 160)
    c.connect("npy", 0, "npy_t", 0)
    c.obj("s $0-npy", "npy_ss", 70, 185)
    c.connect("npy_t", 1, "npy_ss", 0)
    c.obj("file isfile", "isf", 10, 210)
    c.connect("npy_t", 0, "isf", 0)
    c.obj("sel 1", "isf_1", 10, 240)
    c.connect("isf", 0, "isf_1", 0)
    c.obj("r $0-npy", "npy_r", 60, 265)
    c.obj("symbol", "npy_s", 10, 295)
    c.connect("isf_1", 0, "npy_s", 0)
    c.connect("npy_r", 0, "npy_s", 1)
    c.obj("s $0-generate", "npy_gen", 10, 325)
    c.connect("npy_s", 0, "npy_gen", 0)
    c.obj("r $0-dir", "enc_dir", 200, 235)
    c.obj("symbol", "enc_s", 150, 265)
    c.connect("isf", 1, "enc_s", 0)
    c.connect("enc_dir", 0, "enc_s", 1)
    c.msg("encode input loop.wav output $1 latent-wav 1", "enc", 150, 295)
    c.connect("enc_s", 0, "enc", 0)
    # the npy file (loop.npy, or the one encode wrote) -> generate
    c.obj("r $0-generate", "gen_r", 150, 385)
    c.obj("r $0-dir", "gen_dir", 280, 385)
    c.obj("pack s s", "gen_p", 150, 415)
    c.connect("gen_r", 0, "gen_p", 0)
    c.connect("gen_dir", 0, "gen_p", 1)
    c.msg("generate input $1 output $2 pattern fibo points 11 loops 4 seed 2024", "gen", 150, 445)
    c.connect("gen_p", 0, "gen", 0)
    c.obj("outlet", "u", 10, 520)
    c.connect("enc", 0, "u", 0)
    c.connect("gen", 0, "u", 0)
    # the replies: done encode <npy> -> generate; done generate <npy> -> its latent wav
    c.obj("route done error", "rt", 400, 60)
    c.connect("info", 0, "rt", 0)
    # an error: [unravel~] prints it once in Pd's window (no [print] of the reply here)
    if quit_on_error:
        c.obj("s $0-failed", "errq", 560, 90)
        c.connect("rt", 1, "errq", 0)
    c.obj("route encode generate", "rdone", 400, 115)
    c.connect("rt", 0, "rdone", 0)
    c.obj("list", "enc_l", 400, 145)
    c.connect("rdone", 0, "enc_l", 0)
    c.obj("s $0-generate", "enc_gen", 400, 170)
    c.connect("enc_l", 0, "enc_gen", 0)
    # <name>.npy -> <name>.latent.wav
    c.at(600, 145)
    c.obj("list", "gen_l")
    c.connect("rdone", 1, "gen_l", 0)
    c.obj("symbol", "gen_s")
    c.connect("gen_l", 0, "gen_s", 0)
    c.obj("list fromsymbol", "ch")
    c.connect("gen_s", 0, "ch", 0)
    c.obj("t a a", "ch_t")
    c.connect("ch", 0, "ch_t", 0)
    c.obj("list length", "ch_n", 680, 250)
    c.connect("ch_t", 1, "ch_n", 0)
    c.obj("- 4", "ch_m4", 680, 275)
    c.connect("ch_n", 0, "ch_m4", 0)
    c.obj("list split", "ch_split", 600, 300)
    c.connect("ch_m4", 0, "ch_split", 1)
    c.connect("ch_t", 0, "ch_split", 0)
    c.obj("list append " + " ".join(map(str, LATENT_WAV)), "ch_app", 600, 325)
    c.connect("ch_split", 0, "ch_app", 0)
    c.obj("list tosymbol", "ch_sym", 600, 350)
    c.connect("ch_app", 0, "ch_sym", 0)
    c.msg("loops 4, open $1", "open", 600, 375)      # the player shows one of the 4 loops
    c.connect("ch_sym", 0, "open", 0)
    c.obj("outlet", "p", 600, 520)
    c.connect("open", 0, "p", 0)
    return c


def composition() -> str:
    c = Canvas(860, 600)
    _head(c)
    y = _intro(c, "2 - an UnRAVEl composition: encode the bundled loop, generate a fibo pattern "
                   "from its statistics (seed 2024, 11 points: blocks of 1+2+3+5+8 = 19 frames, "
                   "4 loops: 76 frames), play it through the decoder. The player shows one loop: "
                   "19 frames, 0.88 s: 2 beats (the player counts about 2 a second unless "
                   "told 'beats <n>') = 136.00 BPM at 44.1 kHz. "
                   f"Files go to {OUT}/2-composition (a new pattern file each "
                   "time, nothing overwritten). Turn DSP on, click the button (or send "
                   "composition-make), wait for 'loaded', then Render.")
    od = _outdir(c, "2-composition", 560, y)
    # [pd compose] right of the player: its cords to the decoder and back run beside the panel
    c.bng(340, y + 10, "composition-make", "make", "start")
    c.sub(340, y + 45, "compose", _chain(), "compose")
    c.connect("start", 0, "compose", 0)
    c.connect(od, 0, "compose", 2)
    c.obj("ch8ns0n", "p", 20, y + 85)
    c.connect("compose", 1, "p", 0)
    c.obj("unravel~ -m default decode", "u", 340, y + 275)
    c.connect("compose", 0, "u", 0)
    c.connect("u", 1, "compose", 1)
    c.connect("p", 0, "u", 0)
    c.obj("print composition", "pl", 20, y + 300)
    c.connect("p", 1, "pl", 0)
    c.obj("s composition-loaded", "pls", 170, y + 300)
    c.connect("p", 1, "pls", 0)
    _dac(c, "u", 340, y + 315)
    return c.render()


def _folder() -> Canvas:
    """[pd folder]: a bang in -> the output folder out: OUT/3-render (made at load), or the
    one '-send demo-out <folder>' gave."""
    c = Canvas(560, 260, name="folder")
    c.obj("inlet", "in", 10, 10)
    c.obj("r demo-out", "outr0", 100, 10)
    c.obj("list", "outr1", 100, 35)
    c.obj("symbol", "outr", 100, 60)
    od = _outdir(c, "3-render", 200, 10)
    c.chain("outr0", "outr1", "outr")
    c.obj("symbol", "dir", 10, 130)
    c.connect("in", 0, "dir", 0)
    c.connect(od, 0, "dir", 1)
    c.connect("outr", 0, "dir", 1)
    c.obj("outlet", "out", 10, 220)
    c.connect("dir", 0, "out", 0)
    return c


def _finish() -> Canvas:
    """[pd finish]: RENDER_SAMPLES after $0-start: <folder>/demo.wav written from the table
    $0-demo (an existing one kept, its name said), DSP off, then a bang out. The folder is
    the one [pd compose] sent to $0-dir."""
    c = Canvas(600, 560, name="finish")
    c.obj("r $0-start", "start", 10, 10)
    c.obj(f"delay {RENDER_SAMPLES + 256} 1 samp", "len", 10, 40)     # the table is full by then
    c.connect("start", 0, "len", 0)
    c.obj("t b b", "fin", 10, 70)
    c.connect("len", 0, "fin", 0)
    c.obj("r $0-dir", "dir_r", 120, 70)
    c.obj("symbol", "dir", 60, 100)
    c.connect("fin", 1, "dir", 0)
    c.connect("dir_r", 0, "dir", 1)
    c.obj("makefilename %s/demo.wav", "wav", 60, 130)
    c.connect("dir", 0, "wav", 0)
    c.obj("t s s", "wav_t", 60, 160)
    c.connect("wav", 0, "wav_t", 0)
    c.obj("s $0-wav", "wav_s", 120, 190)
    c.connect("wav_t", 1, "wav_s", 0)
    c.obj("file isfile", "isf", 60, 220)
    c.connect("wav_t", 0, "isf", 0)
    # there: its name said, kept
    c.obj("t b", "isb", 60, 250)       # [file isfile] says 1: the name, not 'float'
    c.connect("isf", 0, "isb", 0)
    c.obj("r $0-wav", "keep_r", 110, 275)
    c.obj("symbol", "keep", 60, 305)
    c.connect("isb", 0, "keep", 0)
    c.connect("keep_r", 0, "keep", 1)
    c.msg("exists (kept): $1", "exists", 60, 335)
    c.connect("keep", 0, "exists", 0)
    c.obj("print demo", "exists_pr", 60, 365)
    c.connect("exists", 0, "exists_pr", 0)
    # not there: written
    c.obj("r $0-wav", "new_r", 300, 275)
    c.obj("symbol", "new", 250, 305)
    c.connect("isf", 1, "new", 0)
    c.connect("new_r", 0, "new", 1)
    c.obj("list append $0", "app", 250, 335)
    c.connect("new", 0, "app", 0)
    c.msg("write -wave -bytes 4 $1 $2-demo", "wr", 250, 365)
    c.connect("app", 0, "wr", 0)
    c.obj("soundfiler", "sf", 250, 395)
    c.connect("wr", 0, "sf", 0)
    c.obj("print demo-frames", "sfp", 250, 425)
    c.connect("sf", 0, "sfp", 0)
    # then DSP off, and a bang out (the main window quits Pd when it has no window)
    c.obj("t b b", "end", 10, 420)
    c.connect("fin", 0, "end", 0)
    c.msg("; pd dsp 0", "dspoff", 60, 450)
    c.connect("end", 1, "dspoff", 0)
    c.obj("outlet", "out", 10, 500)
    c.connect("end", 0, "out", 0)
    return c


def render() -> str:
    c = Canvas(1000, 700)
    _head(c)
    y = _intro(c, "3 - a render for headless use: encode the loop, generate a fibo pattern, "
                  "bend one layer, decode through [ch8ns0n] and [unravel~ -m default decode], "
                  f"write {RENDER_SAMPLES} samples to <out>/demo.wav (an existing one is kept) and, "
                  "without a window (pd -nogui / -batch), quit. "
                  "pd -nogui -batch -r 44100 -open 3-render.pd -send 'demo-out /abs/folder' "
                  f"(default: {OUT}/3-render). examples/render.sh does it.")
    # at load (after '-send demo-out ...'): the folder, then [pd compose]
    c.obj("loadbang", "lb", 340, y)
    c.obj("delay 0", "start", 340, y + 25)
    c.connect("lb", 0, "start", 0)
    c.obj("t b b", "start_t", 340, y + 50)
    c.connect("start", 0, "start_t", 0)
    c.sub(420, y + 80, "folder", _folder(), "folder")
    c.connect("start_t", 1, "folder", 0)
    c.sub(340, y + 120, "compose", _chain(quit_on_error=True), "compose")
    c.connect("folder", 0, "compose", 2)
    c.connect("start_t", 0, "compose", 0)
    c.obj("r $0-player", "p_r", 20, y + 120)
    c.obj("ch8ns0n", "p", 20, y + 160)
    c.connect("p_r", 0, "p", 0)
    c.connect("compose", 1, "p", 0)
    c.obj("r $0-u", "u_r", 360, y + 320)
    c.obj("unravel~ -m default decode", "u", 340, y + 350)
    c.connect("u_r", 0, "u", 0)
    c.connect("compose", 0, "u", 0)
    c.connect("p", 0, "u", 0)
    c.connect("u", 1, "compose", 1)
    # loaded -> bend, DSP on, Render and record in one tick; after RENDER_SAMPLES: [pd finish]
    c.obj("route loaded", "loaded", 20, y + 380)
    c.connect("p", 1, "loaded", 0)
    c.obj("t b b b b", "go", 20, y + 405)
    c.connect("loaded", 0, "go", 0)
    c.msg(BEND, "bend", 250, y + 440)
    c.connect("go", 3, "bend", 0)
    c.obj("s $0-u", "bend_s", 250, y + 470)
    c.connect("bend", 0, "bend_s", 0)
    c.msg("; pd dsp 1", "dsp", 150, y + 470)
    c.connect("go", 2, "dsp", 0)
    c.msg("render 1", "ren", 60, y + 460)
    c.connect("go", 1, "ren", 0)
    c.obj("s $0-player", "ren_s", 60, y + 490)
    c.connect("ren", 0, "ren_s", 0)
    c.obj("s $0-start", "go_s", 20, y + 530)
    c.connect("go", 0, "go_s", 0)
    c.obj(f"table $0-demo {RENDER_SAMPLES}", "tab", 600, y + 390)
    c.obj("r $0-start", "rec_r", 470, y + 380)
    c.obj("tabwrite~ $0-demo", "rec", 340, y + 405)
    c.connect("u", 0, "rec", 0)
    c.connect("rec_r", 0, "rec", 0)
    c.sub(800, y + 300, "finish", _finish(), "finish")
    q = _quit_if_headless(c, 800, y + 330)    # here: [pdcontrol] asks about its own window
    c.connect("finish", 0, q, 0)
    c.obj("r $0-failed", "failed", 880, y + 300)
    c.connect("failed", 0, q, 0)
    return c.render()


def diffusion() -> str:
    c = Canvas(860, 600)
    _head(c)
    y = _intro(c, "4 - latent diffusion: sample 256 latent frames from the bundled diffusion "
                   "checkpoint (seed 7, 20 steps) on the job thread, then play them through the "
                   f"decoder. Files go to {OUT}/4-diffusion (diffused_7.wav: the backend's own "
                   "decode, .npy and .latent.wav: the latents, a new name if they exist). Turn DSP "
                   "on, click the button (or send diffusion-make), wait for 'loaded'.")
    od = _outdir(c, "4-diffusion", 560, y)
    c.bng(340, y + 5, "", "make", "start")
    c.obj("r diffusion-make", "rmake", 400, y + 5)
    c.obj("symbol", "outdir", 340, y + 80)
    c.connect(od, 0, "outdir", 1)
    c.connect("start", 0, "outdir", 0)
    c.connect("rmake", 0, "outdir", 0)
    c.msg("diffuse output $1 seed 7 steps 20 latent-wav 1 name diffused", "dif", 340, y + 105)
    c.connect("outdir", 0, "dif", 0)
    c.obj("r $0-player", "p_r", 20, y + 100)
    c.obj("ch8ns0n", "p", 20, y + 125)
    c.connect("p_r", 0, "p", 0)
    c.obj("unravel~ -m default decode", "u", 340, y + 315)
    c.connect("dif", 0, "u", 0)
    c.connect("p", 0, "u", 0)
    c.obj("print diffusion", "pl", 20, y + 340)
    c.connect("p", 1, "pl", 0)
    c.obj("s diffusion-loaded", "pls", 170, y + 340)
    c.connect("p", 1, "pls", 0)
    _dac(c, "u", 340, y + 355)
    # done diffuse <wav> <npy> <latent wav> -> open the latent wav, render
    c.obj("route done error", "rt", 600, y + 130)
    c.connect("u", 1, "rt", 0)
    c.obj("route diffuse", "rd", 600, y + 155)
    c.connect("rt", 0, "rd", 0)
    c.obj("print diffused", "rdp", 700, y + 180)
    c.connect("rd", 0, "rdp", 0)
    c.obj("list split 2", "split", 600, y + 180)
    c.connect("rd", 0, "split", 0)
    c.obj("symbol", "lw", 600, y + 205)
    c.connect("split", 1, "lw", 0)
    c.obj("t b s", "lw_t", 600, y + 230)
    c.connect("lw", 0, "lw_t", 0)
    c.msg("open $1", "open", 670, y + 255)
    c.msg("render 1", "ren", 600, y + 255)
    c.connect("lw_t", 1, "open", 0)
    c.connect("lw_t", 0, "ren", 0)
    c.obj("s $0-player", "p_s", 600, y + 285)
    c.connect("open", 0, "p_s", 0)
    c.connect("ren", 0, "p_s", 0)
    return c.render()


# 5-live: the whole UnRAVEl cycle on Pd arrays, no file. Every control is a public name
# (live-loop, live-record, live-encode, live-stats, live-generate, live-diffuse, live-auto);
# jobs go to [s live-job], replies come back on live-reply, the player's on live-player.
LIVE_GENERATE = "generate input-array live-a output-array live-b pattern fibo points 11 seed $1"
LIVE_DIFFUSE = "diffuse output-array live-b steps 10 latent-length 64 seed $1"


def _live_logic() -> Canvas:
    """[pd live]: what the buttons do. Outlet: messages for the player."""
    c = Canvas(900, 620, name="live")
    # the phrase: the bundled loop, or 4 s from adc~
    c.obj("r live-loop", "rloop", 10, 10)
    c.msg("read -resize loop.wav live-phrase", "read", 10, 35)
    c.obj("soundfiler", "sf", 10, 60)
    c.chain("rloop", "read", "sf")
    c.obj("r live-record", "rrec", 10, 110)
    c.obj("t b b", "rec_t", 10, 135)
    c.obj("samplerate~", "rec_sr", 60, 160)
    c.obj("* 4", "rec_4", 60, 185)
    c.obj("array size live-phrase", "rec_size", 60, 210)
    c.chain("rrec", "rec_t")
    c.connect("rec_t", 1, "rec_sr", 0)
    c.chain("rec_sr", "rec_4", "rec_size")
    c.obj("adc~", "adc", 250, 250)
    c.obj("tabwrite~ live-phrase", "rec_w", 10, 290)
    c.connect("rec_t", 0, "rec_w", 0)
    c.connect("adc", 0, "rec_w", 0)
    # the jobs, each into [s live-job]
    c.obj("r live-encode", "renc", 10, 340)
    c.msg("encode input-array live-phrase output-array live-a", "enc", 10, 365)
    c.obj("s live-job", "job_enc", 10, 390)
    c.obj("r live-stats", "rst", 280, 110)
    c.msg("stats input-array live-a", "st", 280, 135)
    c.obj("s live-job", "job_st", 280, 160)
    c.chain("renc", "enc", "job_enc")
    c.chain("rst", "st", "job_st")
    for x, name, text in ((10, "gen", LIVE_GENERATE), (470, "dif", LIVE_DIFFUSE)):
        c.obj(f"r live-{'generate' if name == 'gen' else 'diffuse'}", f"r{name}", x, 450)
        c.obj("f", f"{name}_f", x, 475)
        c.obj("+ 1", f"{name}_1", x + 40, 475)
        c.msg(text, name, x, 510)
        c.obj("s live-job", f"job_{name}", x, 555)
        c.connect(f"r{name}", 0, f"{name}_f", 0)
        c.connect(f"{name}_f", 0, f"{name}_1", 0)
        c.connect(f"{name}_1", 0, f"{name}_f", 1)
        c.connect(f"{name}_f", 0, name, 0)
        c.connect(name, 0, f"job_{name}", 0)
    # the replies: a new set plays from the next loop boundary (the first one at once)
    c.obj("r live-reply", "rrep", 470, 10)
    c.obj("route done error", "rt", 470, 35)
    c.obj("route encode generate diffuse stats", "rd", 470, 85)
    c.obj("print live-stats", "pst", 740, 115)
    c.obj("t b b", "enc_t", 470, 115)
    c.msg("arrays live-a", "play_a", 540, 140)
    c.msg("arrays live-b", "play_b", 660, 140)
    c.obj("spigot 1", "first", 470, 165)
    c.obj("t b b", "first_t", 470, 190)
    c.msg("0", "first_0", 540, 215)
    c.msg("render 1", "render", 470, 245)
    c.obj("outlet", "out", 660, 280)
    c.chain("rrep", "rt", "rd", "enc_t")
    c.connect("enc_t", 1, "play_a", 0)
    c.connect("rd", 1, "play_b", 0)
    c.connect("rd", 2, "play_b", 0)
    c.connect("rd", 3, "pst", 0)
    c.connect("enc_t", 0, "first", 0)
    c.chain("first", "first_t", "render")
    c.connect("first_t", 1, "first_0", 0)
    c.connect("first_0", 0, "first", 1)
    c.connect("play_a", 0, "out", 0)
    c.connect("play_b", 0, "out", 0)
    c.connect("render", 0, "out", 0)
    # the player's boundaries: the loop count, and with auto a new pattern every loop
    c.obj("r live-player", "rpl", 470, 330)
    c.obj("route loop", "rloopn", 470, 355)
    c.obj("s live-loopn", "loopn", 600, 385)
    c.obj("r live-auto", "rauto", 560, 358)
    c.obj("spigot", "auto", 470, 385)
    c.obj("s live-generate", "autogen", 470, 410)
    c.chain("rpl", "rloopn", "auto", "autogen")
    c.connect("rloopn", 0, "loopn", 0)
    c.connect("rauto", 0, "auto", 1)
    return c


def live() -> str:
    c = Canvas(1000, 580)
    _head(c)
    y = _intro(c, "5 - live UnRAVEl, no files: the phrase, its latents and the patterns live in "
                  "Pd arrays. Turn DSP on. Take a phrase: loop (the bundled one) or record (4 s "
                  "from adc~). Encode it: its latents (the set live-a) start playing through the "
                  "decoder. Generate: a fibo pattern from their statistics (the set live-b, a new "
                  "seed each click) comes in at the next loop boundary, while the loop plays on. "
                  "Diffuse: the next loop (64 frames) from the bundled diffusion checkpoint, in "
                  "the background. Auto: a new pattern every loop. Draw into live-b-0: heard at "
                  "the next boundary. Stats prints each dimension's mean, std, min, max. "
                  "Nothing is written to disk.", 115)
    rows = [("live-loop", "loop"), ("live-record", "record"), ("live-encode", "encode"),
            ("live-stats", "stats"), ("live-generate", "generate"), ("live-diffuse", "diffuse")]
    for i, (snd, lbl) in enumerate(rows):
        c.bng(20, y + 30 * i, lbl=lbl, snd=snd)
    c.tgl(20, y + 30 * len(rows), lbl="auto", snd="live-auto")
    c.floatatom(160, y, 5, "live-loopn", "loop", pos=1)
    c.sub(160, y + 30, "live", _live_logic(), "logic")
    c.text(250, y + 30, "<- what the buttons do", 24)
    c.graph(520, y, "live-b-0", 19, 300, 90, -3, 3, flags=2)
    c.text(830, y, "live-b-0: the first dimension of the pattern playing. Draw into it: "
                   "heard at the next loop boundary.", 22)
    c.graph(520, y + 140, "live-phrase", 100, 300, 60, -1, 1)
    c.text(830, y + 140, "live-phrase: the phrase encode reads", 22)
    c.obj("ch8ns0n", "p", 160, y + 70)
    c.connect("logic", 0, "p", 0)
    py = y + 70 + 179
    c.obj("r live-job", "rjob", 360, py + 20)
    c.obj("unravel~ -m default decode", "u", 160, py + 50)
    c.connect("p", 0, "u", 0)
    c.connect("rjob", 0, "u", 0)
    c.obj("s live-reply", "srep", 410, py + 80)
    c.connect("u", 1, "srep", 0)
    c.obj("s live-player", "spl", 480, py + 20)
    c.connect("p", 1, "spl", 0)
    _dac(c, "u", 160, py + 90)
    return c.render()


def patches() -> dict[str, str]:
    return {"examples/1-bending.pd": bending(), "examples/2-composition.pd": composition(),
            "examples/3-render.pd": render(), "examples/4-diffusion.pd": diffusion(),
            "examples/5-live.pd": live()}
