"""The `unravel` command line, run as a real subprocess: every command, and every bad input
(exit status 2, one line on stderr naming the file and the cause, no traceback, no output)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from unravel import latents

ENTRY = Path(sys.executable).with_name("unravel")


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "unravel.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=240)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def tone(path, sr=44100, seconds=1.0, channels=1, freq=220.0, **kw):
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, np.stack([0.4 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]).T, sr, **kw)
    return path


def files_in(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.is_file()) if d.exists() else []


# --------------------------------------------------------------------------- happy paths


def test_entry_point_and_tempo():
    assert ENTRY.exists()
    r = subprocess.run([ENTRY, "tempo", "--bpm", "120"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "k = 11 frames, 117.45 BPM" in r.stdout
    out = ok(run("tempo", "--sr", "48000", "--ratio", "1024"))
    rows = [line.split() for line in out.splitlines()[2:]]
    for k, bpm, double, seconds in rows:
        assert float(bpm) == pytest.approx(60 * 48000 / 1024 / int(k), abs=0.006)
        assert float(double) == pytest.approx(2 * float(bpm), abs=0.011)
        assert float(seconds) == pytest.approx(int(k) * 1024 / 48000, abs=6e-5)
    assert 40 <= min(float(r[1]) for r in rows) and max(float(r[1]) for r in rows) <= 240


def test_pipeline_commands(tmp_path):
    """encode -> stats -> generate -> decode on the bundled default model."""
    src = tmp_path / "src"
    src.mkdir()
    tone(src / "a.wav", 48000, 1.2, channels=2)
    tone(src / "b.flac", 44100, 0.8, freq=330.0)
    out = ok(run("encode", "--model", "default", src, "-o", tmp_path / "lat", "--latent-wav"))
    # every file written is printed
    assert out.split() == [str(tmp_path / "lat" / f) for f in ("a.npy", "a.latent.wav", "b.npy", "b.latent.wav")]
    assert files_in(tmp_path / "lat") == ["a.latent.wav", "a.npy", "b.latent.wav", "b.npy"]
    # the raw length goes to the model, as UnRAVEl's encoder does: the toy model makes
    # floor(1.2 * 44100 / 2048) frames, not the ceil that padding to whole frames made
    assert np.load(tmp_path / "lat" / "a.npy").shape == (1, 8, 25)
    assert sf.info(tmp_path / "lat" / "a.latent.wav").samplerate == 21

    d = json.loads(ok(run("stats", tmp_path / "lat", "--iqr", "--json", "--plot", tmp_path / "h.png")))
    z = np.concatenate([latents.read(tmp_path / "lat" / f) for f in ("a.npy", "b.npy")], axis=1)
    assert d["frames"] == z.shape[1] and len(d["iqr_lower"]) == 8
    np.testing.assert_allclose(d["median"], np.median(z, axis=1), rtol=1e-5)
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    table = ok(run("stats", tmp_path / "lat" / "a.npy"))
    assert "8 dims, 25 frames" in table and "correlation:" in table

    gen = ["generate", tmp_path / "lat", "--pattern", "fibo", "--dist", "normal", "--bpm", "120",
           "--loops", "2", "--seed", "7", "--model", "default"]
    r = run(*gen, "-o", tmp_path / "g1")
    paths = ok(r).split()   # every file written: .npy, .latent.wav, .json
    assert paths == [str(tmp_path / "g1" / f"fibo-normal-001{s}") for s in (".npy", ".latent.wav", ".json")]
    assert "117.45 BPM" in r.stderr
    same = gen[:-2] + ["--sr", "44100", "--ratio", "2048"]   # what --model default gives
    ok(run(*same, "-o", tmp_path / "g2"))
    for f in ("fibo-normal-001.npy", "fibo-normal-001.latent.wav"):
        assert (tmp_path / "g1" / f).read_bytes() == (tmp_path / "g2" / f).read_bytes()
    assert np.load(paths[0]).shape == (1, 8, 2 * (1 + 2 + 3 + 5 + 8))

    out = ok(run("decode", "--model", "default", paths[0], "-o", tmp_path / "dec"))
    w = Path(out.strip())
    y, sr = sf.read(w)
    assert w.name == "fibo-normal-001.wav" and sr == 44100 and len(y) == 38 * 2048
    assert np.sqrt(np.mean(y ** 2)) > 1e-3
    r = run("decode", "--model", "default", paths[0], "-o", tmp_path / "dec")
    assert r.returncode == 2 and "already exists" in r.stderr
    assert (tmp_path / "dec" / "fibo-normal-001.wav").read_bytes() == w.read_bytes()


def run_on_terminal(*args) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal: (status, stdout, what the terminal got)."""
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # 24 x 100
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    p = subprocess.Popen([sys.executable, "-m", "unravel.cli", *map(str, args)], env=env,
                         stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:          # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = p.stdout.read()
    rc = p.wait(timeout=240)
    os.close(master)
    return rc, out, b"".join(chunks).decode(errors="replace")


def test_long_file_progress_on_a_terminal(tmp_path):
    tone(tmp_path / "long.wav", 44100, 12.0)
    tone(tmp_path / "short.wav", 44100, 2.0)
    rc, out, term = run_on_terminal("encode", "--model", "default", tmp_path / "long.wav",
                                    tmp_path / "short.wav", "-o", tmp_path / "lat")
    assert rc == 0 and out.split() == [str(tmp_path / "lat" / "long.npy"), str(tmp_path / "lat" / "short.npy")]
    assert "encode long.wav" in term and f"0/{12 * 44100 // 2048} [" in term and "frames/s" in term
    assert "encode short.wav" not in term
    rc, out, term = run_on_terminal("decode", "--model", "default", tmp_path / "lat" / "long.npy",
                                    "-o", tmp_path / "dec")
    assert rc == 0 and "decode long.wav" in term and f"0/{12 * 44100 // 2048} [" in term and "frames/s" in term
    # not on a terminal: no status lines
    r = run("encode", "--model", "default", tmp_path / "long.wav", "-o", tmp_path / "lat2")
    assert "frames" not in ok(r) + r.stderr


def test_info_as_unravels_inspector(tmp_path, quirk_models):
    # class names, the stereo flag and the state dict's buffers, as UnRAVEl's inspector shows
    text = ok(run("info", "default"))
    assert "encoder      ConvEncoder" in text and "decoder      ConvDecoder" in text
    assert "stereo       unknown" in text and "buffers      3" in text
    assert re.search(r"\n  decode_params +4 +4\n", text)
    info = json.loads(ok(run("info", quirk_models["stereo"], "--json")))
    assert info["stereo"] is True and info["encoder"] is None
    assert {b["name"] for b in info["buffers"]} >= {"encode_params", "decode_params", "forward_params"}
    # a folder of models (with subfolders), and the parameter table as CSV
    lib = tmp_path / "lib"
    (lib / "more").mkdir(parents=True)
    shutil.copy(quirk_models["stereo"], lib / "st.ts")
    shutil.copy(quirk_models["dims4"], lib / "more" / "d4.ts")
    (lib / "notes.txt").write_text("x")
    csv_path = tmp_path / "table.csv"
    r = ok(run("info", lib, "--csv", csv_path))
    assert [l.split()[1] for l in r.splitlines() if l.startswith("model ")] == \
        [str(lib / "more" / "d4.ts"), str(lib / "st.ts")]
    import csv
    rows = list(csv.DictReader(csv_path.open()))
    d4 = json.loads(ok(run("info", lib / "more" / "d4.ts", "--json")))
    mine = [r for r in rows if r["model"] == str(lib / "more" / "d4.ts")]
    assert [r["name"] for r in mine] == [l["name"] for l in d4["layers"]] + [b["name"] for b in d4["buffers"]]
    first = mine[0]
    assert (first["kind"], first["shape"], int(first["numel"])) == (
        "parameter", "x".join(map(str, d4["layers"][0]["shape"])), d4["layers"][0]["numel"])
    assert {r["kind"] for r in mine[len(d4["layers"]):]} == {"buffer"}
    r = run("info", lib, "--csv", csv_path)
    assert r.returncode == 2 and "table.csv: already exists" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("info", empty)
    assert r.returncode == 2 and "empty: folder has no .ts model files" in r.stderr


def test_info_and_bend(tmp_path, quirk_models):
    info = json.loads(ok(run("info", "default", "--json")))
    assert (info["sr"], info["latent_dims"], info["ratio"]) == (44100, 8, 2048)
    assert info["methods"]["decode"] == {"in_channels": 8, "in_ratio": 2048, "out_channels": 1, "out_ratio": 1}
    text = ok(run("info", quirk_models["stereo"]))
    assert "latent dims  8" in text and "1 in, 2 out" in text and "pqmf.weight" in text
    layer = next(l["name"] for l in info["layers"] if l["learned"])
    out = tmp_path / "bent.ts"
    ok(run("bend", "--model", "default", "--layer", layer, "--op", "offset", "--amount", "0.5",
           "--percent", "50", "-o", out))
    orig = dict(torch.jit.load(info["path"]).named_parameters())[layer]
    bent = dict(torch.jit.load(str(out)).named_parameters())[layer]
    changed = (bent != orig).flatten()
    assert 0.4 < changed.float().mean() < 0.6
    assert torch.allclose((bent - orig).flatten()[changed], torch.tensor(0.5), atol=1e-5)
    r = run("bend", "--model", "default", "--layer", layer, "--op", "zero", "--amount", "1", "-o", out)
    assert r.returncode == 2 and "already exists" in r.stderr


def test_quirk_models_encode_decode(tmp_path, quirk_models):
    tone(tmp_path / "a.aiff", 22050, 0.6, format="AIFF")
    m = quirk_models["stereo"]
    ok(run("encode", "--model", m, tmp_path / "a.aiff", "-o", tmp_path))
    ok(run("decode", "--model", m, tmp_path / "a.npy", "-o", tmp_path / "d"))
    info = sf.info(tmp_path / "d" / "a.wav")
    assert (info.channels, info.frames) == (2, 12 * 2048)   # 0.6 s at 44.1 kHz, the raw length: floor(26460 / 2048) frames
    r = run("decode", "--model", quirk_models["dims4"], tmp_path / "a.npy", "-o", tmp_path / "d4")
    assert r.returncode == 2 and "a.npy: latents have 8 dims, 4 expected by model dims4.ts" in r.stderr


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "fake.ts").write_text("not a model")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(d / "nocontract.ts"))
    latents.write_npy(d / "lat8.npy", np.ones((8, 10), np.float32))
    latents.write_npy(d / "lat4.npy", np.ones((4, 10), np.float32))
    np.save(d / "batch.npy", np.zeros((2, 8, 10), np.float32))
    (d / "junk.npy").write_bytes(b"\x93NUMPY\x01\x00junk")
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00garbage")
    (d / "empty").mkdir()
    (d / "afile").write_text("a regular file")
    tone(d / "good.wav", 44100, 0.3)
    (d / "exists").mkdir()
    (d / "exists" / "good.npy").write_bytes(b"keep me")
    return d


# id: (argv, command, file named in the message, cause, folder that must stay as it was)
BAD = {
    "model missing": (["info", "missing.ts"], "info", "missing.ts", "not found", None),
    "not torchscript": (["info", "fake.ts"], "info", "fake.ts", "not a TorchScript", None),
    "no contract": (["info", "nocontract.ts"], "info", "nocontract.ts", "contract", None),
    "encode bad model": (["encode", "--model", "fake.ts", "good.wav", "-o", "o1"], "encode", "fake.ts",
                         "not a TorchScript", "o1"),
    "audio missing": (["encode", "--model", "default", "nope.wav", "-o", "o2"], "encode", "nope.wav",
                      "no such file", "o2"),
    "corrupt audio": (["encode", "--model", "default", "corrupt.wav", "-o", "o3"], "encode", "corrupt.wav",
                      "not a readable audio file", "o3"),
    "empty folder": (["encode", "--model", "default", "empty", "-o", "o4"], "encode", "empty",
                     "no audio files", "o4"),
    "unwritable output": (["encode", "--model", "default", "good.wav", "-o", "afile/sub"], "encode",
                          "afile", "cannot create output folder", None),
    "output exists": (["encode", "--model", "default", "good.wav", "-o", "exists"], "encode", "good.npy",
                      "already exists", "exists"),
    "wrong dims": (["decode", "--model", "default", "lat4.npy", "-o", "o5"], "decode", "lat4.npy",
                   "4 dims, 8 expected", "o5"),
    "wrong shape": (["decode", "--model", "default", "batch.npy", "-o", "o6"], "decode", "batch.npy",
                    "latent shape", "o6"),
    "latent missing": (["decode", "--model", "default", "nope.npy", "-o", "o7"], "decode", "nope.npy",
                       "no such file", "o7"),
    "decode unwritable": (["decode", "--model", "default", "lat8.npy", "-o", "afile"], "decode", "afile",
                          "not a folder", None),
    "corrupt npy": (["stats", "junk.npy"], "stats", "junk.npy", "not a readable .npy", None),
    "mixed dims": (["stats", "lat8.npy", "lat4.npy"], "stats", "lat4.npy", "4 dims, 8 expected", None),
    "plot unwritable": (["stats", "lat8.npy", "--plot", "afile/h.png"], "stats", "afile", "not a folder", None),
    "generate empty": (["generate", "empty", "-o", "o8"], "generate", "empty", "no latent files", "o8"),
    "generate bad points": (["generate", "lat8.npy", "--points", "0", "-o", "o9"], "generate", "--points",
                            "between 1 and", "o9"),   # bounded at parse time (issue 15)
    "bend bad layer": (["bend", "--model", "default", "--layer", "no.such.layer", "--op", "offset",
                        "--amount", "1", "-o", "b.ts"], "bend", "no.such.layer", "", None),
    "tempo bad bpm": (["tempo", "--bpm", "-5"], "tempo", "--bpm", "at least 0.001", None),
    "bad choice": (["generate", "lat8.npy", "--pattern", "spiral"], "generate", "spiral", "invalid choice", None),
}


@pytest.fixture(scope="module")
def bad_results(bad):
    with ThreadPoolExecutor(max_workers=3) as ex:
        futures = {k: ex.submit(run, *v[0], cwd=bad) for k, v in BAD.items()}
        return {k: f.result() for k, f in futures.items()}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(bad, bad_results, case):
    argv, command, name, cause, folder = BAD[case]
    r = bad_results[case]
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"unravel {command}: ") and name in lines[0] and cause in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    if folder == "exists":
        assert files_in(bad / folder) == ["good.npy"] and (bad / folder / "good.npy").read_bytes() == b"keep me"
    elif folder:
        assert files_in(bad / folder) == []


def test_bad_input_leaves_no_files(bad, bad_results):
    assert not (bad / "b.ts").exists()
    leftovers = [p for p in bad.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_threads_anywhere_and_model_rates(tmp_path, quirk_models, capsys):
    """--threads before or after the command (a command that runs a model; tempo takes it
    before only, issue 25); generate/tempo take sr and ratio from --model."""
    from unravel import cli
    p = cli.build_parser()
    enc = ["encode", "-m", "default", "x.wav"]
    assert p.parse_args(enc).threads == 1
    assert p.parse_args(["--threads", "3", *enc]).threads == 3
    assert p.parse_args([*enc, "--threads", "2"]).threads == 2
    assert p.parse_args(["--threads", "3", "tempo"]).threads == 3
    latents.write_npy(tmp_path / "z.npy", np.random.default_rng(0).normal(size=(8, 30)).astype(np.float32))
    m = str(quirk_models["sr48k_sampling_rate"])
    assert cli.main(["generate", str(tmp_path / "z.npy"), "--model", m, "--bpm", "120", "-o", str(tmp_path / "g")]) == 0
    side = json.loads((tmp_path / "g" / "default-normal-001.json").read_text())
    assert (side["sr"], side["ratio"], side["latent_rate"], side["points"]) == (48000, 2048, 23, 12)
    assert sf.info(tmp_path / "g" / "default-normal-001.latent.wav").samplerate == 23
    assert cli.main(["tempo", "--model", m, "--bpm", "120"]) == 0
    assert "k = 12 frames, 117.19 BPM" in capsys.readouterr().out
