"""The options of each operation, declared once (see `unravel.settings`): encode, stats,
generate, tempo, decode, bend, diffuse, prepare and train.

Each spec builds the `unravel` command's parser, the Pd job's option parser (the first six
and diffuse are Pd jobs) and the help patch's rows. Options marked `where="cli"` have no
Pd key because the [unravel~] object gives them (its model, its device) or because they
shape only what the command prints; those marked "pd" read or write Pd arrays.
"""

from __future__ import annotations

from unravel import limits
from unravel.audio import AUDIO_EXTENSIONS, RESAMPLERS
from unravel.distributions import DISTRIBUTIONS
from unravel.patterns import PATTERNS
from unravel.settings import Option, Spec

MODEL_HELP = "TorchScript model file ('default' = the bundled model)"

SEED = Option("seed", "int", low=0, high=limits.MAX_SEED, metavar="S", help="random seed")


BEND_OPS = {   # what `bend` does to the chosen weights (unravel.bend does it)
    "offset": "add the amount",
    "spread": "multiply by the amount",
    "randomize": "add Gaussian noise of the seed, std amount x 1e-4 (0: off)",
    "invert": "negate (on when the amount is not 0)",
    "zero": "set to 0 (on when the amount is not 0)",
}


def _model(default: str | None = None, required: bool = True, help: str = MODEL_HELP) -> Option:
    """The model of a command; a Pd job uses its object's."""
    return Option("model", "str", default=default, short="-m", help=help, where="cli",
                  required=required and default is None, metavar="MODEL")


def _inputs(what: str) -> Option:
    return Option("inputs", "paths", positional=True,
                  pd_name="input", metavar="INPUT" if what == "audio" else "LATENTS",
                  help=LOOP_HELP if what == "audio"
                  else ".npy / latent .wav files or folders")


LOOP_HELP = ("audio files or folders (scanned with their subfolders). On the command line 'loop' "
             "is the bundled 8 s, 180 BPM loop (unless a file or folder 'loop' is here)")


def _output(help: str = "output folder (default: .)", required: bool = False) -> Option:
    return Option("output", "path", short="-o", metavar="DIR", help=help, required=required)


IN_ARRAY = Option("input-array", "array", where="pd", help="read the input from this Pd array set")
OUT_ARRAY = Option("output-array", "array", where="pd", help="write the result into this Pd array set")
FORCE = Option("force", "flag", short="-f", help="overwrite existing output files")
LATENT_WAV = Option("latent-wav", "flag", help="also write <name>.latent.wav")
LATENT_SUBTYPE = Option("latent-subtype", "choice", default="double", choices=("double", "float"),
                        help="latent wav samples: 64-bit (default) or 32-bit float")
SUBTYPE = Option("subtype", "choice", default="float", choices=("float", "pcm16"),
                 help="audio: 32-bit float (default) or 16-bit PCM clipped as UnRAVEl's")
FLOAT32 = Option("float32", "flag", help="statistics in float32 as UnRAVEl computes them: a seed "
                "then draws the original's numbers bit for bit (default float64)")
RESAMPLER = Option("resampler", "choice", default="sinc", choices=RESAMPLERS,
                   help="audio at another rate than the model's: sinc, torchaudio's default "
                        "kernel as the originals (default), or poly, scipy's polyphase filter "
                        "(any pair of rates)")
JOBS = Option("jobs", "int", default=1, low=1, high=limits.MAX_JOBS, metavar="N",
              help="in N worker processes (the same files as one, default 1)")
RATE_FROM_MODEL = (
    _model(required=False, help="take the sample rate and ratio from this model"),
    Option("sr", "int", default=44100, low=1, high=limits.MAX_SR, where="cli",
           help="sample rate without --model (default 44100)"),
    Option("ratio", "int", default=2048, low=1, high=limits.MAX_RATIO, where="cli",
           help="frames ratio without --model (default 2048)"),
)
BPM = Option("bpm", "float", low=0.001, high=100_000, group="length",
             help="pick the block length whose tempo is nearest (default 120)")

ENCODE = Spec("encode", "audio files or folders -> latents (.npy)", (
    _model(), _inputs("audio"), IN_ARRAY, _output(), OUT_ARRAY, LATENT_WAV, LATENT_SUBTYPE,
    Option("extensions", "strs", default=list(AUDIO_EXTENSIONS), metavar="EXT",
           help="file endings looked for in folders"),
    JOBS, FORCE, RESAMPLER),
    examples=("unravel encode -m default loop -o latents/ --latent-wav",
              "unravel encode -m default drums.wav loops/ -o latents/"))

STATS = Spec("stats", "per-dimension statistics of latents", (
    _inputs("latents"), IN_ARRAY,
    Option("iqr", "flag", help="add IQR centre, spread and bounds"), FLOAT32,
    Option("json", "flag", where="cli", help="print JSON"),
    Option("plot", "path", metavar="PNG", help="write a histogram per dimension"),
    Option("output", "path", where="pd", help="the JSON file (default <first input>.stats.json)"),
    FORCE),
    examples=("unravel stats latents/ --iqr", "unravel stats latents/loop.npy --json --plot loop.png"))

GENERATE = Spec("generate", "synthetic latents from the statistics of encodings, arranged in a pattern", (
    _inputs("latents"), IN_ARRAY,
    Option("pattern", "choice", default="default", choices=PATTERNS,
           help="how a block of points is arranged (see the README's Generate)"),
    Option("dist", "choice", default="normal", choices=DISTRIBUTIONS,
           help="what the points are drawn from: normal N(mean, std), uniform U(mean +- 3 std), "
                "iqr-uniform U(lower, upper), correlation (the covariance)"),
    Option("iqr", "flag", help="centre/spread from the quartiles"), FLOAT32,
    Option("points", "int", low=1, high=limits.MAX_LATENT_FRAMES, metavar="K", group="length",
           help="frames per block"),
    BPM,
    Option("loops", "int", default=1, low=1, high=limits.MAX_COUNT, metavar="N",
           help="repetitions (default 1)"),
    Option("files", "int", default=1, low=1, high=limits.MAX_COUNT, metavar="N",
           help="files to make, all from one random stream (default 1)"),
    Option("seed", "int", default=0, low=0, high=limits.MAX_SEED, metavar="S",
           help="seed of the random stream (default 0)"),
    Option("skip", "int", default=0, low=0, high=limits.MAX_COUNT, metavar="I",
           help="draw and drop the first I files of the stream (the sidecars use it)"),
    Option("plot", "path", metavar="PNG",
           help="also write violin, box and time-series plots of the generated files"),
    LATENT_SUBTYPE,
    *RATE_FROM_MODEL, _output(), OUT_ARRAY, FORCE),
    examples=("unravel generate latents/ --pattern fibo --dist correlation --bpm 120 --loops 4 "
              "--seed 7 -o gen/",))

TEMPO = Spec("tempo", "quantized loop tempos (k frames -> BPM)", (
    *RATE_FROM_MODEL,
    Option("bpm", "float", low=0.001, high=100_000, group="length",
           help="show the k nearest this tempo"),
    Option("k", "int", low=1, high=limits.MAX_LATENT_FRAMES, group="length",
           help="show the tempo of a loop of k frames"),
    Option("table", "choice", default="ours", choices=("ours", "original"), where="cli",
           group="length",
           help="ours: every k from 40 to 240 BPM, rounded, double time on each row; original: "
                "UnRAVEl's k = 1..20, truncated, double time on even k"),
), examples=("unravel tempo", "unravel tempo -m default --bpm 180", "unravel tempo --k 16",
             "unravel tempo --table original"))

DECODE = Spec("decode", "latents -> audio at the model's rate", (
    _model(), _inputs("latents"), IN_ARRAY, _output(), OUT_ARRAY, SUBTYPE, FORCE),
    examples=("unravel decode -m default gen/ -o audio/",))

BEND = Spec("bend", "bend a layer's weights, save a new model", (
    _model(),
    Option("layer", "str", required=True, help="layer name (see unravel info)"),
    Option("op", "choice", required=True, choices=tuple(BEND_OPS),
           help=", ".join(f"{op}: {what}" for op, what in BEND_OPS.items())),
    Option("amount", "float", low=-1e6, high=1e6, required=True, help="how much (see --op)"),
    Option("percent", "float", low=0, high=100, open_low=True,
           help="bend only this percent of the weights, evenly spaced"),
    Option("seed", "int", low=0, high=limits.MAX_SEED, help="seed for randomize"),
    Option("output", "path", short="-o", required=True, metavar="OUT.ts", help="the bent model"),
    FORCE),
    examples=("unravel bend -m default --layer decoder.net.2.weight --op offset --amount 0.05 "
              "-o bent.ts",))

DIFFUSE = Spec("diffuse", "sample latents from a diffusion checkpoint, decode them to audio", (
    Option("checkpoint", "str", default="default", short="-c",
           help="diffusion checkpoint .pt ('default' = the bundled one)"),
    _model("default"),
    Option("arch", "str", metavar="ARCH",
           help="architecture for checkpoints that do not store one: a preset (original, "
                "flex-256 .. flex-16384, tiny, small, medium) or A.json (default: the "
                "Flex'ed preset for its latent_length, else the original 4096 preset)"),
    Option("seed", "int", low=0, high=limits.MAX_SEED, metavar="S", help="first seed (default: random)"),
    Option("num", "int", default=1, low=1, high=limits.MAX_COUNT, metavar="N",
           help="files to make: seeds S, S+1, ..."),
    Option("steps", "int", default=100, low=1, high=limits.MAX_STEPS, help="diffusion steps"),
    Option("sampler", "choice", default="v", choices=("v", "dpm"),
           help="v: the reference's, its numbers for a seed (default), dpm: DPM-Solver++(3M), "
                "near convergence in 20 steps"),
    Option("temperature", "float", default=1.0, low=0, high=1e3, help="noise scale"),
    Option("latent-scale", "float", default=1.0, low=-1e3, high=1e3, group="normalize",
           help="scale after the global z-score"),
    Option("skip-normalize", "flag", group="normalize", help="decode the latents as sampled"),
    Option("latent-length", "int", low=1, high=limits.MAX_LATENT_FRAMES, metavar="L",
           help="latent frames to sample (default: the checkpoint's, a multiple of its "
                "network's downsampling)"),
    Option("length-mult", "int", default=1, low=1, high=limits.MAX_LENGTH_MULT, metavar="K",
           help="sample K times the latent length"),
    Option("lerp", "flag", help="slerp from seed A's to seed B's latents"),
    Option("seed-a", "int", low=0, high=limits.MAX_SEED, metavar="A", help="seed A (with lerp, default random)"),
    Option("seed-b", "int", low=0, high=limits.MAX_SEED, metavar="B", help="seed B (with lerp, default random)"),
    Option("lerp-factor", "float", default=1.0, low=-1e3, high=1e3,
           help="interpolation reaches this factor at the end"),
    Option("save-latents", "flag", help="also write the latents as .npy"),
    LATENT_WAV, LATENT_SUBTYPE, SUBTYPE,
    Option("name", "str", default="diffuse", help="file name prefix"),
    Option("batch", "int", default=4, low=1, high=limits.MAX_BATCH, metavar="B",
           help="seeds sampled together (default 4, 1 = bit-exact with the reference loop)"),
    _output(), OUT_ARRAY, FORCE),
    examples=("unravel diffuse -o out/", "unravel diffuse --seed 7 --num 4 --sampler dpm --steps 20 -o out/"))

PREPARE = Spec("prepare", "audio files or folders -> training latents for train-diffusion", (
    _model("default"), _inputs("audio"),
    Option("latent-length", "int", default=256, low=1, high=limits.MAX_LATENT_FRAMES, metavar="L",
           help="latent frames per chunk (default 256, chunks of L*ratio samples)"),
    Option("no-normalize", "flag", help="skip the per-chunk z-score"),
    _output("latent folder", required=True), JOBS, FORCE, RESAMPLER,
    Option("pcm16", "flag", help="read each file as the original preprocessing does: FFmpeg "
                                 "to 16-bit mono at the model's rate, its resampler instead of "
                                 "--resampler (needs PyAV, the av extra)")),
    command="prepare-diffusion",
    examples=("python -m unravel.data.toyrave loop --bars 90 --out long/   # in a clone: 2 min of audio",
              "unravel prepare-diffusion -m default long/ -o train-latents/ --latent-length 256"))

TRAIN = Spec("train", "train a latent diffusion model on a folder of latents", (
    Option("latents", "path", positional=True, metavar="LATENT_DIR",
           help="folder of (1, D, L) .npy latents"),
    _output("checkpoint folder", required=True),
    Option("arch", "str", default="small",
           help="tiny, small, medium, flex (the Flex'ed preset for the latent length) or A.json"),
    Option("name", "str", default="diffusion", help="checkpoint name prefix"),
    Option("batch-size", "int", default=8, low=1, high=limits.MAX_BATCH, help="latents per batch"),
    Option("accumulation-steps", "int", default=2, low=1, high=limits.MAX_COUNT,
           help="batches per optimizer step"),
    Option("lr", "float", default=1e-4, low=0, high=1e3, open_low=True, help="AdamW learning rate"),
    Option("weight-decay", "float", default=1e-4, low=0, high=1e3, help="AdamW weight decay"),
    Option("scheduler-steps", "int", default=100, low=1, high=limits.MAX_EPOCHS,
           help="epochs per LR decay (x0.99)"),
    Option("noise-std", "float", default=0.1, low=0, high=1e3, help="augmentation noise"),
    Option("patience", "int", default=200, low=1, high=limits.MAX_EPOCHS,
           help="early stop after N epochs without improvement"),
    Option("max-epochs", "int", default=25000, low=1, high=limits.MAX_EPOCHS, help="stop after N epochs"),
    Option("max-minutes", "float", low=0, high=1e7, open_low=True, help="stop after this many minutes"),
    Option("split-ratio", "float", default=0.8, low=0, high=1, open_low=True,
           help="training share of the latents"),
    Option("save-interval", "int", default=100, low=1, high=limits.MAX_EPOCHS,
           help="write <name>_last.pt every N epochs"),
    Option("resume", "path", metavar="CKPT", group="start",
           help="continue a run (weights, optimizer, epoch)"),
    Option("finetune", "path", metavar="CKPT", group="start", help="start from a checkpoint's weights"),
    Option("seed", "int", default=664, low=0, high=limits.MAX_SEED,
           help="seed of the split, the initial weights and the batches"),
    Option("no-optimizer-state", "flag",
           help="write checkpoints without optimizer/scheduler state (smaller, not resumable)"),
    Option("precision", "choice", default="32", choices=("32", "16-mixed", "bf16-mixed"),
           help="32-bit, or mixed precision with float16 (CUDA) or bfloat16 autocast"),
    FORCE), command="train-diffusion",
    examples=("unravel train-diffusion train-latents/ -o runs/ --arch tiny --max-minutes 1",
              "unravel train-diffusion train-latents/ -o runs/ --resume runs/diffusion_last.pt"))

CHANNEL_OPS = {   # what `channels` does to a layer's output channels (unravel.bend does it)
    "ablate": "set them to zero (the channel falls silent)",
    "scale": "multiply them by the amount",
    "invert": "negate them",
    "permute": "swap the chosen channels among themselves (a seeded order)",
}

CHANNELS = Spec("channels", "ablate, scale, invert or permute a layer's output channels, save a new model", (
    _model(),
    Option("layer", "str", required=True, help="a conv or linear layer's weight or bias (see unravel info)"),
    Option("op", "choice", required=True, choices=tuple(CHANNEL_OPS),
           help=", ".join(f"{op}: {what}" for op, what in CHANNEL_OPS.items())),
    Option("amount", "float", default=1.0, low=-1e6, high=1e6, help="scale: the factor"),
    Option("channels", "ints", low=0, high=limits.MAX_LATENT_FRAMES, metavar="C", group="which",
           help="these output channels (default: all)"),
    Option("percent", "float", low=0, high=100, open_low=True, group="which",
           help="this share of the output channels, picked with the seed"),
    Option("seed", "int", default=0, low=0, high=limits.MAX_SEED,
           help="picks the channels of --percent and the order of permute"),
    Option("output", "path", short="-o", required=True, metavar="OUT.ts", help="the bent model"),
    FORCE),
    examples=("unravel channels -m default --layer decoder.net.6.weight --op ablate --percent 25 "
              "--seed 7 -o quiet.ts",
              "unravel channels -m default --layer encoder.net.2.weight --op scale --amount 2 "
              "--channels 0 5 -o louder.ts"))

MORPH = Spec("morph", "mix two models: each layer both have (name and shape) becomes (1-t)·A + t·B", (
    Option("a", "str", positional=True, metavar="A",
           help="the model at t = 0 ('default' = the bundled model)"),
    Option("b", "str", positional=True, metavar="B",
           help="the model at t = 1; best one fine-tuned from the same base as A"),
    Option("t", "float", low=-1, high=2, required=True,
           help="how far from A towards B (0..1, beyond extrapolates)"),
    Option("layers", "str", default="", metavar="PREFIX",
           help="only the layers whose names start with PREFIX (see unravel info)"),
    Option("output", "path", short="-o", required=True, metavar="OUT.ts", help="the morphed model"),
    FORCE),
    examples=("unravel morph default my_finetune.ts --t 0.3 -o between.ts   # your own model B",
              "unravel morph default my_finetune.ts --t 0.5 --layers decoder. -o half.ts"))

OUTPUT_OPS = {   # what `output` does to what a layer gives (unravel.outops does it)
    "offset": "add the value",
    "threshold": "set what is at or below the value to 0",
    "clamp": "keep between the value and --high",
}

OUTPUT = Spec("output", "offset, threshold or clamp a layer's output (in the graph, not the weights), "
              "save a new model", (
    _model(),
    Option("layer", "str", required=True, help="a conv or linear layer, by its name or its weight's "
                                               "(see unravel info)"),
    Option("op", "choice", required=True, choices=tuple(OUTPUT_OPS),
           help=", ".join(f"{op}: {what}" for op, what in OUTPUT_OPS.items())),
    Option("value", "float", low=-1e6, high=1e6, required=True, help="the amount, level or low bound"),
    Option("high", "float", low=-1e6, high=1e6, help="clamp: the high bound"),
    Option("output", "path", short="-o", required=True, metavar="OUT.ts", help="the bent model"),
    FORCE),
    examples=("unravel output -m default --layer decoder.net.6 --op threshold --value 0.1 -o gate.ts",
              "unravel output -m default --layer decoder.net.8 --op clamp --value -0.5 --high 0.5 "
              "-o clip.ts"))

APP = Spec("app", "start the web page (needs the [app] extra)", (
    Option("host", "str", default="127.0.0.1", help="address to listen on"),
    Option("port", "int", default=7860, low=limits.MIN_PORT, high=limits.MAX_PORT, help="port"),
    Option("models", "path", metavar="DIR", help="folder of RAVE .ts models and diffusion checkpoints"),
    Option("out", "path", metavar="DIR", help="folder for what the page makes (default: a new temp folder)"),
    Option("max-upload-mb", "float", default=300, low=0, high=1e6, open_low=True, metavar="MB",
           help="largest upload, in MB of decoded audio"),
), examples=("unravel app", "unravel app --models my-models/ --port 8000"))

THREADS = Option("threads", "int", default=1, low=1, high=limits.MAX_THREADS, metavar="N",
                 help="torch threads (default 1: fastest for small models on few cores)")

SPECS = (ENCODE, STATS, GENERATE, TEMPO, DECODE, BEND, CHANNELS, MORPH, OUTPUT, DIFFUSE, PREPARE, TRAIN)
PD_JOBS = (ENCODE, STATS, GENERATE, DECODE, TEMPO, DIFFUSE)
