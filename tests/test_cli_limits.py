"""Bounded work from the command line (issues 15 and 16): every number is bounded at parse
time, and sizes that come from files (a checkpoint's latent_length, a model's channels, a
latent file's dims) are checked before anything is allocated. Each case runs `unravel` as a
subprocess and must end with exit status 2 and ONE line naming the option and the limit:
no traceback, no output file."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unravel import cli, limits

TIMEOUT = 240


def run(*args, cwd=None, fsize: int | None = None) -> subprocess.CompletedProcess:
    """`python -m unravel.cli ARGS`; `fsize` limits the size of any file it writes (RLIMIT_FSIZE:
    a write past it fails with EFBIG, as on a full disk)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-m", "unravel.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=TIMEOUT,
                          preexec_fn=limit)


def one_line_error(r: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single stderr line of a refused command (status 2, no traceback, nothing on stdout)."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert r.stdout == ""
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def tiny_checkpoint(path: Path, latent_length: int, arch: str = "tiny") -> Path:
    """An untrained 8-dim checkpoint (the bundled model's dims) claiming `latent_length`."""
    from unravel.diffusion import save_checkpoint
    from unravel.diffusion.vdiffusion import SMALL_PRESETS, DiffusionModel
    torch.manual_seed(0)
    return save_checkpoint(path, DiffusionModel(8, **SMALL_PRESETS[arch]),
                           latent_length=latent_length, epoch=0)


class WideModel(torch.nn.Module):
    """A model with nn~'s contract that declares 20,000 audio channels (3.4 GB per second of
    audio once mixed to it)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("encode_params", torch.tensor([20000, 2048, 4, 1]))
        self.register_buffer("decode_params", torch.tensor([4, 1, 20000, 2048]))

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :4, ::2048]

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.repeat(1, 5000, 2048)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder with a short wav, a latent file, the wide model and two checkpoints."""
    import soundfile as sf
    d = tmp_path_factory.mktemp("limits")
    t = np.arange(44100) / 44100
    sf.write(d / "tone.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 44100)
    np.save(d / "lat.npy", np.random.default_rng(0).normal(size=(1, 8, 40)).astype(np.float32))
    np.save(d / "wide.npy", np.random.default_rng(0).normal(size=(1, 5000, 8)).astype(np.float32))
    torch.jit.save(torch.jit.script(WideModel()), str(d / "wide.ts"))
    tiny_checkpoint(d / "huge.pt", 10**9)            # claims 32 GB of latents per sample
    tiny_checkpoint(d / "long.pt", limits.MAX_LATENT_FRAMES)   # within bounds, too big to sample
    return d


# ------------------------------------------------------------------ the cases of issue 15

CASES = {
    "encode --threads 100000": (["encode", "--threads", "100000", "-m", "default", "tone.wav",
                                 "-o", "out"], ["--threads", "between 1 and 256"]),
    "generate --seed -1": (["generate", "lat.npy", "--seed", "-1", "-o", "out"],
                           ["--seed", f"between 0 and {limits.MAX_SEED}"]),
    "bend --seed 2^64": (["bend", "-m", "default", "--layer", "x", "--op", "randomize",
                          "--amount", "1", "--seed", str(2**64), "-o", "out/b.ts"],
                         ["--seed", f"between 0 and {limits.MAX_SEED}"]),
    "diffuse --num 1e9": (["diffuse", "--num", "1000000000", "-o", "out"],
                          ["--num", f"between 1 and {limits.MAX_COUNT}"]),
    "diffuse --length-mult 100000": (["diffuse", "--length-mult", "100000", "-o", "out"],
                                     ["--length-mult", f"between 1 and {limits.MAX_LENGTH_MULT}"]),
    "diffuse --steps 1e9": (["diffuse", "--steps", "1000000000", "-o", "out"],
                            ["--steps", f"between 1 and {limits.MAX_STEPS}"]),
    "app --port -1": (["app", "--port", "-1"], ["--port", "between 1 and 65535"]),
    "app --port 99999": (["app", "--port", "99999"], ["--port", "between 1 and 65535"]),
    "tempo --sr 1e9 --ratio 1": (["tempo", "--sr", "1000000000", "--ratio", "1"],
                                 ["--sr", f"between 1 and {limits.MAX_SR}"]),
    "generate --points 1e9": (["generate", "lat.npy", "--points", "1000000000", "-o", "out"],
                              ["--points", f"between 1 and {limits.MAX_LATENT_FRAMES}"]),
    "train-diffusion --batch-size 1e9": (["train-diffusion", "x", "-o", "out", "--batch-size",
                                          "1000000000"], ["--batch-size", "between 1 and"]),
    "diffuse --temperature nan": (["diffuse", "--temperature", "nan", "-o", "out"],
                                  ["--temperature", "finite"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_numbers_out_of_range_are_one_line(case, files, tmp_path):
    args, fragments = CASES[case]
    for name in ("tone.wav", "lat.npy"):
        shutil.copy(files / name, tmp_path / name)
    one_line_error(run(*args, cwd=tmp_path), *fragments)
    assert not (tmp_path / "out").exists()


def test_every_number_option_of_every_command_is_bounded():
    """No subcommand takes a plain int or float: each numeric option has a bounded type."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen = 0
    for name, sub in [("unravel", parser), *commands.choices.items()]:
        for action in sub._actions:
            assert action.type not in (int, float), f"{name} {action.option_strings}: unbounded"
            seen += action.type is not None
    assert seen > 40


def test_tempo_table_of_a_huge_frame_rate_is_refused(files):
    """`tempo` at a frame rate whose table has millions of rows (it never ended before)."""
    one_line_error(run("tempo", "--sr", str(limits.MAX_SR), "--ratio", "1"),
                   "loop lengths", f"more than the {limits.MAX_TEMPO_ROWS}", "--bpm")
    r = run("tempo", "--sr", str(limits.MAX_SR), "--ratio", "1", "--bpm", "120")
    assert r.returncode == 0 and "k = 500000 frames" in r.stdout, r.stderr


def test_stats_plot_of_5000_dims_is_refused(files, tmp_path):
    one_line_error(run("stats", files / "wide.npy", "--plot", tmp_path / "p.png"),
                   "p.png", f"at most {limits.MAX_PLOT_DIMS} dims", "5000")
    assert list(tmp_path.iterdir()) == []


def test_a_model_declaring_20000_channels_is_refused(files, tmp_path):
    """encode and decode with a model whose method params declare 20,000 audio channels."""
    one_line_error(run("encode", "-m", files / "wide.ts", files / "tone.wav", "-o", tmp_path / "e"),
                   "wide.ts", "encode", "20000")   # refused when the model loads (or by encode)
    np.save(tmp_path / "four.npy", np.zeros((1, 4, 3), np.float32))
    one_line_error(run("decode", "-m", files / "wide.ts", tmp_path / "four.npy", "-o", tmp_path / "d"),
                   "decode", "20000")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["four.npy"]


def test_checkpoint_claiming_latent_length_1e9_is_refused(files, tmp_path):
    one_line_error(run("diffuse", "-c", files / "huge.pt", "--seed", "1", "--steps", "1",
                       "-o", tmp_path / "out"),
                   "huge.pt", "latent_length 1000000000", str(limits.MAX_LATENT_FRAMES))
    assert files_in(tmp_path / "out") == []


def test_sampling_that_cannot_fit_in_memory_is_refused(files, tmp_path):
    """A checkpoint within the frame bound whose U-Net attention would need terabytes: the
    estimate refuses it before the first step."""
    line = one_line_error(run("diffuse", "-c", files / "long.pt", "--seed", "1", "--steps", "1",
                              "-o", tmp_path / "out"), "of memory", "lower length_mult or batch")
    assert "GB" in line
    assert files_in(tmp_path / "out") == []


def test_memory_estimate_matches_sampling_shapes():
    """The estimate grows with length and batch as the U-Net's tensors do (linear in the
    activations, quadratic at attention levels) and is above the noise tensor itself."""
    from unravel.diffusion.sample import sampling_memory
    from unravel.diffusion.vdiffusion import SMALL_PRESETS
    arch = SMALL_PRESETS["tiny"]
    small = sampling_memory(arch, 8, 256, 1)
    assert small > 8 * 256 * 4
    assert sampling_memory(arch, 8, 256, 4) == 4 * small
    assert sampling_memory(arch, 8, 2**20, 1) > 2**40     # attention at length/4: terabytes


def files_in(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.is_file()) if d.exists() else []


@pytest.mark.parametrize("command", [["encode", "-m", "default", "{fifo}.wav", "-o", "out"],
                                     ["stats", "{fifo}.npy"],
                                     ["diffuse", "-c", "{fifo}.pt", "-o", "out"]])
def test_a_fifo_as_input_is_refused_instead_of_blocking(command, tmp_path):
    """Reading a fifo (or a device) would block or never end: only regular files are read."""
    fifo = tmp_path / "in"
    args = [a.replace("{fifo}", str(fifo)) for a in command]
    [path] = [a for a in args if a.startswith(str(fifo))]
    os.mkfifo(path)
    one_line_error(run(*args, cwd=tmp_path), "not a regular file")


# ------------------------------------------------------------------ the cases of issue 26

def test_a_tiny_bpm_is_one_line():
    one_line_error(run("tempo", "--sr", "44100", "--ratio", "2048", "--bpm", "1e-320"),
                   "--bpm", "at least 0.001")


def test_npy_header_claiming_terabytes_is_one_line(tmp_path):
    from test_bounds import huge_npy
    p = huge_npy(tmp_path / "huge.npy")
    for args in (["stats", p], ["decode", "-m", "default", p, "-o", tmp_path / "out"]):
        one_line_error(run(*args), "huge.npy", "header claims shape (1, 8, 549755813888)")
    assert files_in(tmp_path / "out") == []


def test_latent_length_at_the_top_of_its_range_is_refused_by_the_estimate(tmp_path):
    """--latent-length overrides the checkpoint's: the memory estimate uses it (it sampled
    16 GB at once for 131072 before)."""
    line = one_line_error(run("diffuse", "--latent-length", str(limits.MAX_LATENT_FRAMES),
                              "--seed", "1", "--steps", "1", "-o", tmp_path / "out"),
                          f"sampling 1 x {limits.MAX_LATENT_FRAMES} latent frames", "of memory")
    assert "GB" in line
    assert files_in(tmp_path / "out") == []


def test_arch_fifo_is_refused_instead_of_blocking(files, tmp_path):
    """`diffuse --arch FIFO` (a checkpoint without a stored architecture) and
    `train-diffusion --arch FIFO` read only regular files (both never ended before)."""
    obj = torch.load(files / "long.pt", weights_only=True)
    obj.pop("arch")
    torch.save(obj, tmp_path / "bare.pt")
    lat = tmp_path / "lat"
    lat.mkdir()
    for i in range(2):
        np.save(lat / f"x_part{i:03d}.npy", np.zeros((1, 8, 256), np.float32))
    fifo = tmp_path / "arch.json"
    os.mkfifo(fifo)
    one_line_error(run("diffuse", "-c", tmp_path / "bare.pt", "--arch", fifo, "--seed", "1",
                       "-o", tmp_path / "out"), "arch.json", "not a regular file")
    one_line_error(run("train-diffusion", lat, "-o", tmp_path / "out", "--arch", fifo),
                   "arch.json", "not a regular file")
    assert files_in(tmp_path / "out") == []
