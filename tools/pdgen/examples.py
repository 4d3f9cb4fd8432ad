"""pd/examples/1-bending.pd, 2-composition.pd, 3-render.pd."""

from .canvas import Canvas
from .help import _dac, _loop_player

LATENT_WAV = [46, 108, 97, 116, 101, 110, 116, 46, 119, 97, 118]   # ".latent.wav"
RENDER_SAMPLES = 8 * 44100
BEND = "bend decoder.net.6.weight spread 1.5 50 1"


def bending() -> str:
    c = Canvas(900, 720)
    c.text(20, 10, "1 - live network bending: the bundled loop through the default model, bent "
                   "with [bender]. Turn DSP on, click Init, pick a decoder layer, move the sliders.", 70)
    src = _loop_player(c, 20, 70)
    c.obj("unravel~ default forward", "u", 20, 220)
    c.connect(src, 0, "u", 0)
    c.obj("bender", "b", 20, 270)
    c.connect("u", 1, "b", 0)
    c.connect("b", 0, "u", 0)
    _dac(c, "u", 20, 660)
    c.msg("save bent.ts", "save", 500, 220)
    c.connect("save", 0, "u", 0)
    c.text(500, 245, "<- keep the bent model (a TorchScript file nn~ loads too)", 30)
    return c.render()


def _chain(quit_on_error: bool = False) -> Canvas:
    """[pd compose]: inlets: bang (go), [unravel~]'s info, the output folder (symbol);
    outlets: messages for [unravel~], messages for [ch8ns0n]. Encode the loop, generate a fibo
    pattern, open the generated latent wav in the player."""
    c = Canvas(700, 520, name="compose")
    c.obj("inlet", "go", 10, 10)
    c.obj("inlet", "info", 250, 10)
    c.obj("inlet", "dir", 500, 10)
    c.obj("symbol", "outdir", 10, 60)
    c.connect("go", 0, "outdir", 0)
    c.connect("dir", 0, "outdir", 1)
    c.msg("encode input loop.wav output $1 latent-wav 1 force 1", "enc", 10, 90)
    c.connect("outdir", 0, "enc", 0)
    c.obj("outlet", "u", 10, 480)
    c.connect("enc", 0, "u", 0)
    c.at(250, 40)
    c.obj("route done error", "rt")
    c.connect("info", 0, "rt", 0)
    c.obj("route encode generate", "rdone")
    c.connect("rt", 0, "rdone", 0)
    c.obj("print unravel-job-error", "rerr", 450, 65)
    c.connect("rt", 1, "rerr", 0)
    if quit_on_error:
        c.msg("; pd quit", "errquit", 450, 90)
        c.connect("rt", 1, "errquit", 0)
    c.obj("list", "enc_l")
    c.connect("rdone", 0, "enc_l", 0)
    c.obj("pack s s", "gen_p")
    c.connect("enc_l", 0, "gen_p", 0)
    c.connect("dir", 0, "gen_p", 1)
    c.msg("generate input $1 output $2 pattern fibo points 11 loops 4 seed 2024", "gen")
    c.connect("gen_p", 0, "gen", 0)
    c.connect("gen", 0, "u", 0)
    # <name>.npy -> <name>.latent.wav
    c.at(250, 200)
    c.obj("list", "gen_l")
    c.connect("rdone", 1, "gen_l", 0)
    c.obj("symbol", "gen_s")
    c.connect("gen_l", 0, "gen_s", 0)
    c.obj("list fromsymbol", "ch")
    c.connect("gen_s", 0, "ch", 0)
    c.obj("t a a", "ch_t")
    c.connect("ch", 0, "ch_t", 0)
    c.obj("list length", "ch_n", 350, 300)
    c.connect("ch_t", 1, "ch_n", 0)
    c.obj("- 4", "ch_m4", 350, 325)
    c.connect("ch_n", 0, "ch_m4", 0)
    c.obj("list split", "ch_split", 250, 350)
    c.connect("ch_m4", 0, "ch_split", 1)
    c.connect("ch_t", 0, "ch_split", 0)
    c.obj("list append " + " ".join(map(str, LATENT_WAV)), "ch_app", 250, 375)
    c.connect("ch_split", 0, "ch_app", 0)
    c.obj("list tosymbol", "ch_sym", 250, 400)
    c.connect("ch_app", 0, "ch_sym", 0)
    c.msg("open $1", "open", 250, 425)
    c.connect("ch_sym", 0, "open", 0)
    c.obj("outlet", "p", 250, 480)
    c.connect("open", 0, "p", 0)
    return c


def composition() -> str:
    c = Canvas(1000, 760)
    c.text(20, 10, "2 - an UnRAVEl composition: encode the bundled loop, generate a fibo pattern "
                   "from its statistics (seed 2024, 11-frame loops = 117.45 BPM), play it through "
                   "the decoder. Files go to this folder. Turn DSP on, click the button, wait for "
                   "'loaded', then Render.", 75)
    c.obj("loadbang", "lb", 200, 110)
    c.msg("dir", "dirm", 200, 135)
    c.obj("pdcontrol", "dir", 200, 160)
    c.chain("lb", "dirm", "dir")
    c.bng(20, 130, "", "make", "start")
    c.sub(20, 195, "compose", _chain(), "compose")
    c.connect("start", 0, "compose", 0)
    c.connect("dir", 0, "compose", 2)
    c.obj("ch8ns0n", "p", 20, 240)
    c.connect("compose", 1, "p", 0)
    c.obj("unravel~ -m default decode", "u", 20, 450)
    c.connect("compose", 0, "u", 0)
    c.connect("u", 1, "compose", 1)
    c.connect("p", 0, "u", 0)
    c.obj("print composition", "pl", 330, 425)
    c.connect("p", 1, "pl", 0)
    _dac(c, "u", 20, 490)
    return c.render()


def render() -> str:
    c = Canvas(1000, 760)
    c.text(20, 10, "3 - a render for headless use: encode the loop, generate a fibo pattern, "
                   "bend one layer, decode through [ch8ns0n] and [unravel~ -m default decode], "
                   f"write {RENDER_SAMPLES} samples to <out>/demo.wav and quit. "
                   "pd -nogui -batch -r 44100 -open 3-render.pd -send 'demo-out /abs/folder' "
                   "(default: render/ beside this patch). examples/render.sh does it.", 75)
    c.obj("loadbang", "lb", 20, 100)
    c.obj("t b b", "lb_t", 20, 125)
    c.connect("lb", 0, "lb_t", 0)
    c.msg("dir", "dirm", 120, 150)
    c.connect("lb_t", 1, "dirm", 0)
    c.obj("pdcontrol", "dir", 120, 175)
    c.connect("dirm", 0, "dir", 0)
    c.obj("makefilename %s/render", "defdir", 120, 200)
    c.connect("dir", 0, "defdir", 0)
    c.obj("r demo-out", "outr0", 300, 150)
    c.obj("list", "outr1", 300, 175)
    c.obj("symbol", "outr", 300, 200)
    c.chain("outr0", "outr1", "outr")
    c.obj("symbol", "outdir", 20, 230)
    c.connect("defdir", 0, "outdir", 1)
    c.connect("outr", 0, "outdir", 1)
    c.obj("delay 0", "start", 20, 150)        # after '-send demo-out ...'
    c.connect("lb_t", 0, "start", 0)
    c.obj("unravel~ -m default decode", "u", 20, 560)
    c.obj("ch8ns0n", "p", 20, 330)
    c.connect("p", 0, "u", 0)
    c.obj("t b b", "start_t", 20, 260)
    c.connect("start", 0, "start_t", 0)
    c.connect("start_t", 1, "outdir", 0)
    c.sub(20, 290, "compose", _chain(quit_on_error=True), "compose")
    c.connect("outdir", 0, "compose", 2)
    c.connect("start_t", 0, "compose", 0)
    c.connect("compose", 0, "u", 0)
    c.connect("compose", 1, "p", 0)
    c.connect("u", 1, "compose", 1)
    # loaded -> bend, DSP on, Render and record in one tick; after RENDER_SAMPLES: write, quit
    c.at(600, 560)
    c.obj("route loaded", "loaded")
    c.connect("p", 1, "loaded", 0)
    c.obj("t b b b", "go2")
    c.connect("loaded", 0, "go2", 0)
    c.msg(BEND, "bend")
    c.connect("go2", 2, "bend", 0)
    c.connect("bend", 0, "u", 0)
    c.msg("; pd dsp 1", "dsp")
    c.connect("go2", 1, "dsp", 0)
    c.msg("render 1", "ren")
    c.connect("go2", 0, "ren", 0)
    c.connect("ren", 0, "p", 0)
    c.obj(f"table $0-demo {RENDER_SAMPLES}", "tab", 20, 620)
    c.obj("tabwrite~ $0-demo", "rec", 20, 650)
    c.connect("u", 0, "rec", 0)
    c.connect("go2", 0, "rec", 0)
    c.obj(f"delay {RENDER_SAMPLES + 256} 1 samp", "len")     # the table is full by then
    c.connect("go2", 0, "len", 0)
    c.obj("t b b", "fin")
    c.connect("len", 0, "fin", 0)
    c.obj("symbol", "fin_dir")
    c.connect("fin", 1, "fin_dir", 0)
    c.connect("defdir", 0, "fin_dir", 1)
    c.connect("outr", 0, "fin_dir", 1)
    c.msg("write -wave -bytes 4 $1/demo.wav $2-demo", "wr")
    c.obj("list append $0", "fin_app")
    c.connect("fin_dir", 0, "fin_app", 0)
    c.connect("fin_app", 0, "wr", 0)
    c.obj("soundfiler", "sf")
    c.connect("wr", 0, "sf", 0)
    c.obj("print demo-frames", "sfp")
    c.connect("sf", 0, "sfp", 0)
    c.msg("; pd dsp 0; pd quit", "quit")
    c.connect("fin", 0, "quit", 0)
    return c.render()


def patches() -> dict[str, str]:
    return {"examples/1-bending.pd": bending(), "examples/2-composition.pd": composition(),
            "examples/3-render.pd": render()}
