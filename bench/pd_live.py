"""What each message a musician sends [unravel~] during DSP costs in real-time Pd (issue 20).

Every run is a fresh `pd -nogui -noaudio` process in REAL TIME (no -batch, so [unravel~] is in
live mode) playing `[noise~] -> [unravel~ MODEL forward 2048]`, beside a second, unconnected
`[unravel~ MODEL forward 2048]` (so the model is shared, as in a patch with two voices) and an
array for `set_weights`. Once the object's output is non-zero, the messages are sent one by
one, --settle seconds apart, and for each (tests/pdrun.py: run_live):

- Pd thread ms: the message call itself, timed with [realtime] around it;
- largest DSP gap ms: the largest time between two DSP ticks ([bang~] into [realtime]) in the
  --window seconds after the message was sent (idle: a few ms);
- underruns: the object's `underruns` (its status reply to `bang`) 0.3 s before the next
  message minus 0.3 s before this one.

The idle baseline (no message) comes first after the start, so it also shows what the first
seconds of playing cost. A message that made Pd print an error is marked in the table.

The first `bend`, `get_weights`, `set_weights`, `restore`, `set` and `save` on a shared model
each run in their own Pd process (the first weight edit copies the shared model); the other
messages run in one process, in the order of the table (`load` last, as it changes the model).
Variants: [unravel~], and with --nn DIR IRCAM's nn~ 1.6 (`[nn~ -m MODEL forward 2048]`, -m
because nn~ takes `load` and `method` only in multichannel mode) with the messages nn~ has
(load, set, bang, reload, bufsize, method); nn~ counts no underruns (n/a). nn~ runs without
OMP_NUM_THREADS (nn~ 1.6 built here crashes with OMP_NUM_THREADS=1, see README.md).

The figures are medians over --runs runs; the runs are interleaved (each group of messages on
every variant, then the next group, then the next run). The machine is shared: the load
average is printed before and after. Also printed: Pd's start to the object's first non-zero
output (wall time, median), how long after the message its `done`, `error`, `loaded` or
`saved` reply came (timed in Pd), and Pd's error lines.

Then, unless --no-switch, bench/pd_switch.py's table for the model (loops of 16 and 64
frames): from a `generate` or `diffuse` request to the first audible frame of the new set.

Usage: .venv/bin/python bench/pd_live.py [--model PATH] [--other PATH] [--nn DIR] [--runs 3]
       [--settle 2] [--window 1.5] [--layer NAME] [--lib DIR] [--no-switch]
Another checkout's build (e.g. the code before a change, from `git archive`):
       PYTHONPATH=CHECKOUT/pybackend .venv/bin/python bench/pd_live.py --lib CHECKOUT/build/unravel
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pdrun import BUILD, LiveRun, run_live  # noqa: E402

import pd_switch  # noqa: E402
from pd_render import loadavg  # noqa: E402

import unravel  # noqa: E402
from unravel.model import DATA_DIR, resolve_model  # noqa: E402

B = 2048
ARRAY = "lv_weights"         # the Pd array set_weights reads
PRE_MS = 300                 # the status bang goes this long before each message


@dataclass
class Case:
    """One row of the table: `message` is sent as is to every variant that has it."""
    label: str
    message: str
    nn: bool                 # nn~ 1.6 has this message


@dataclass
class Variant:
    """How one object is run: its text, a second object on the same model beside it (which
    makes the model shared), other objects beside it, Pd's extra args, environment."""
    name: str
    obj: str
    twin: str
    extra: list[str]
    args: list[str]
    env: dict


def model_info(model: pathlib.Path) -> dict:
    """`unravel info MODEL --json`: layers (name, numel, learned), attributes, methods."""
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "unravel"), "info", str(model), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def pick_layer(info: dict, name: str | None) -> tuple[str, int]:
    """(layer, numel): `name`, or the model's first learned layer."""
    layers = info["layers"]
    if name:
        match = [ly for ly in layers if ly["name"] == name]
        if not match:
            raise SystemExit(f"no layer {name!r}; layers: {' '.join(ly['name'] for ly in layers)}")
        return name, match[0]["numel"]
    ly = next((ly for ly in layers if ly["learned"]), layers[0])
    return ly["name"], ly["numel"]


def fmt_value(v) -> str:
    """An attribute's value as a Pd atom (True -> 1)."""
    return f"{float(v):g}" if isinstance(v, (int, float)) else str(v)


def groups(info: dict, other: pathlib.Path, layer: str, tmp: pathlib.Path, wav: pathlib.Path,
           npy: pathlib.Path) -> list[list[Case]]:
    """The messages, one list per Pd process."""
    out = tmp / "out"
    shared = [
        Case(f"first `bend {layer} offset 0.1` (shared)", f"bend {layer} offset 0.1", False),
        Case(f"first `get_weights {layer}` (shared)", f"get_weights {layer}", False),
        Case(f"first `set_weights {layer} <array>` (shared)", f"set_weights {layer} {ARRAY}", False),
        Case("first `restore` (shared)", "restore", False),
    ]
    attrs = info.get("attributes") or {}
    if attrs:                                   # the first attribute, set to its current value
        name, values = next(iter(attrs.items()))
        vals = " ".join(fmt_value(v) for v in values)
        shared.append(Case(f"first `set {name} {vals}` (shared)", f"set {name} {vals}", True))
    shared.append(Case("`save <file> force` (shared)", f"save {tmp / 'saved.ts'} force", False))
    main = [
        Case("(nothing: idle baseline)", "", True),
        Case("`bang` (status)", "bang", True),
        Case("`bufsize 4096`", "bufsize 4096", True),
        Case("`method forward`", "method forward", True),
        Case("`encode input <wav> output <dir>` (job)", f"encode input {wav} output {out} force 1", False),
        Case("`decode input <npy> output <dir>` (job)", f"decode input {npy} output {out} force 1", False),
        Case("`reload`", "reload", True),
        Case(f"`load {other.name}`", f"load {other}", True),
    ]
    return [[c] for c in shared] + [main]


def variants(model: pathlib.Path, numel: int, nn_dir: pathlib.Path | None) -> list[Variant]:
    obj = f"unravel~ {model} forward {B}"
    v = [Variant("unravel~", obj, obj, [f"array define {ARRAY} {numel}"], [], {})]
    if nn_dir is not None:
        nobj = f"nn~ -m {model} forward {B}"
        v.append(Variant("nn~", nobj, nobj, [], ["-path", str(nn_dir)], {"OMP_NUM_THREADS": None}))
    return v


def run_group(v: Variant, cases: list[Case], d: pathlib.Path, settle_ms: float, window_ms: float,
              lib: pathlib.Path, tries: int = 3) -> LiveRun:
    """One Pd process for these cases; repeated (up to `tries`) when Pd died before the end."""
    msgs = [(settle_ms, c.message) for c in cases]
    extra = [v.twin] + v.extra
    for attempt in range(tries):
        r = run_live(d, v.obj, msgs, extra=extra, args=v.args, env=v.env, window_ms=window_ms,
                     pre_ms=PRE_MS, tail_ms=settle_ms, path=lib, name=f"{v.name.rstrip('~')}.pd")
        complete = all(x.pd_thread_ms is not None and x.max_gap_ms is not None for x in r.results)
        if complete and not r.timed_out:
            return r
        print(f"    {v.name}: Pd ended early (exit {r.returncode}, timed out {r.timed_out}); "
              f"{'retrying' if attempt + 1 < tries else 'keeping what it printed'}: "
              f"{(r.errors or r.lines or [''])[-1][:200]}", file=sys.stderr)
    return r


def med(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cell(x: float | None, digits: int = 1) -> str:
    return "?" if x is None else f"{x:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="a TorchScript model with forward (default: the bundled one)")
    ap.add_argument("--other", default="default4", help="the model `load` switches to (default: the bundled default4)")
    ap.add_argument("--nn", type=pathlib.Path, help="folder with an nn~ 1.6 build (nn~.pd_linux) to compare with")
    ap.add_argument("--runs", type=int, default=3, help="runs of everything (medians are reported)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between two messages (default 2)")
    ap.add_argument("--window", type=float, default=1.5, help="seconds after a message in which the largest DSP gap is taken")
    ap.add_argument("--layer", help="the layer to bend and read (default: the model's first learned layer)")
    ap.add_argument("--lib", type=pathlib.Path, default=BUILD,
                    help="the Pd library folder holding unravel~ (default build/unravel; for another "
                         "checkout's build also set PYTHONPATH to its pybackend)")
    ap.add_argument("--no-switch", action="store_true",
                    help="skip the table of bench/pd_switch.py (generate/diffuse to the first audible frame)")
    a = ap.parse_args()
    if a.settle * 1000 < a.window * 1000 + PRE_MS:
        ap.error(f"--settle must be at least --window + {PRE_MS / 1000:g} s")
    model, other = resolve_model(a.model), resolve_model(a.other)
    nn_dir = a.nn.resolve() if a.nn else None
    if nn_dir and not (nn_dir / "nn~.pd_linux").is_file():
        ap.error(f"{nn_dir} holds no nn~.pd_linux")
    info = model_info(model)
    if "forward" not in info["methods"]:
        ap.error(f"{model} has no forward method")
    layer, numel = pick_layer(info, a.layer)
    wav = DATA_DIR / "loop.wav"
    with tempfile.TemporaryDirectory() as tmp:
        t = pathlib.Path(tmp)
        (t / "lat").mkdir()
        (t / "out").mkdir()
        subprocess.run([str(ROOT / ".venv" / "bin" / "unravel"), "encode", "--device", "cpu", "-m", str(model),
                        "-o", str(t / "lat"), str(wav)], check=True, capture_output=True)
        npy = t / "lat" / (wav.stem + ".npy")
        plan = groups(info, other, layer, t, wav, npy)
        vs = variants(model, numel, nn_dir)
        print(f"[unravel~] from {a.lib.resolve()}, its Python package from {pathlib.Path(unravel.__file__).parent}")
        print(f"model {model}; load -> {other}; layer {layer} ({numel} weights); {a.runs} runs, "
              f"{a.settle:g} s between messages, DSP gap over {a.window:g} s; "
              f"real-time pd -nogui -noaudio -r 44100; load average {loadavg()}")
        vals: dict[tuple[str, str], dict[str, list]] = {}
        startup: dict[str, list] = {v.name: [] for v in vs}
        done: dict[tuple[str, str, str], list] = {}
        errors: dict[str, set] = {v.name: set() for v in vs}
        for run in range(a.runs):
            for cases in plan:
                for v in vs:
                    mine = [c for c in cases if v.name == "unravel~" or c.nn]
                    if not mine:
                        continue
                    d = t / f"run{run}"
                    d.mkdir(exist_ok=True)
                    r = run_group(v, mine, d, a.settle * 1000, a.window * 1000, a.lib.resolve())
                    startup[v.name].append(r.first_output_s)
                    errors[v.name].update(r.errors)
                    for c, x in zip(mine, r.results):
                        if c.label.startswith("first") and x.status.get("shared") not in (None, "1"):
                            print(f"    warning: {c.label}: the model was not shared (status shared "
                                  f"{x.status.get('shared')})", file=sys.stderr)
                        row = vals.setdefault((v.name, c.label), {"ms": [], "gap": [], "under": [], "err": 0})
                        row["err"] += bool(x.errors)
                        row["ms"].append(x.pd_thread_ms)
                        row["gap"].append(x.max_gap_ms)
                        row["under"].append(x.underruns_delta)
                        for ms, reply in x.replies:
                            if ms is not None and c.message != "bang" and reply.startswith(
                                    ("done ", "error ", "loaded ", "saved ")):
                                done.setdefault((v.name, c.label, reply.split()[0]), []).append(ms / 1000)
            print(f"  run {run + 1} done; load average {loadavg()}", file=sys.stderr)
        labels = [c.label for cases in plan for c in cases]
        names = [v.name for v in vs]
        head = "| message | " + " | ".join(f"{n} Pd thread ms | {n} largest DSP gap ms | {n} underruns"
                                           for n in names) + " |"
        print()
        print(head)
        print("|" + "---|" * (1 + 3 * len(names)))
        for label in labels:
            cells = []
            for n in names:
                row = vals.get((n, label))
                if row is None:
                    cells += ["-", "-", "-"]
                    continue
                u = med(row["under"])
                cells += [cell(med(row["ms"]), 2) + (f" (error in {row['err']}/{len(row['ms'])})" if row["err"] else ""),
                          cell(med(row["gap"])), ("n/a" if n == "nn~" else "?") if u is None else f"{u:g}"]
            print(f"| {label} | " + " | ".join(cells) + " |")
        print()
        for n in names:
            s = med(startup[n])
            print(f"{n}: Pd start -> first non-zero output {cell(s, 2)} s (median of {len(startup[n])} processes)")
        for (n, label, sel), secs in done.items():
            print(f"{n}: {label}: `{sel}` reply {cell(med(secs), 3)} s after the message (median of {len(secs)})")
        for n in names:
            for e in sorted(errors[n])[:10]:
                print(f"{n}: Pd error: {e[:300]}")
        print(f"load average at the end {loadavg()}")
    if not a.no_switch and "decode" in info["methods"]:
        print("\nFrom a job to the first audible frame of the set it makes (bench/pd_switch.py):")
        pd_switch.table([model], [16, 64], list(pd_switch.JOBS), a.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
