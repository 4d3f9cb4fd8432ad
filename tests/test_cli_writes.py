"""Safety of what users own, from the command line (issues 15 and 16): every writer goes
through safewrite.write_set (one file: write_file), which replaces only a new name or, when forced, a
regular file; writes a uniquely named temporary file in the target's folder and removes it on
any failure; names may not leave their folder; the files of one result (.npy + latent wav +
sidecar, wav + npy + json) appear together or not at all. Real subprocesses, real failures:
a full tmpfs, RLIMIT_FSIZE (EFBIG mid-write), a device node, a fifo, a folder in the way."""

from __future__ import annotations

import os
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_cli_limits import files_in, one_line_error, run
from unravel import modelinfo
from unravel.model import DEFAULT_MODEL, load_model


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("writes")
    t = np.arange(2 * 44100) / 44100
    sf.write(d / "tone.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 44100)
    np.save(d / "lat.npy", np.random.default_rng(0).normal(size=(1, 8, 400)).astype(np.float32))
    return d


@pytest.fixture(scope="module")
def layer() -> str:
    return modelinfo.layers(load_model(DEFAULT_MODEL, warmup=False).module)[0].name


@contextmanager
def full_tmpfs(folder: Path, size: str = "64k"):
    """A tiny tmpfs mounted on `folder` (skips the test where mounting is not allowed)."""
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def temp_files(d: Path) -> list[str]:
    return [p.name for p in d.rglob("*") if ".tmp" in p.name]


# ------------------------------------------------------------------ full disk, failed writes

def test_bend_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, layer):
    """torch's archive writer fails on a full tmpfs (a C++ error, a traceback before)."""
    with full_tmpfs(tmp_path / "full") as full:
        r = run("bend", "-m", "default", "--layer", layer, "--op", "offset", "--amount", "0.1",
                "-o", full / "bent.ts")
        line = one_line_error(r, "bent.ts", "cannot write")
        assert "no space left on device" in line.lower()
        assert list(full.iterdir()) == []


def test_bend_write_that_fails_midway_removes_its_temp_file(tmp_path, layer):
    """The same without a tmpfs: RLIMIT_FSIZE makes the write fail halfway (EFBIG)."""
    r = run("bend", "-m", "default", "--layer", layer, "--op", "offset", "--amount", "0.1",
            "-o", tmp_path / "bent.ts", fsize=100_000)
    one_line_error(r, "bent.ts", "cannot write")
    assert list(tmp_path.iterdir()) == []


def test_encode_onto_a_full_disk_leaves_no_temp_file(tmp_path):
    t = np.arange(20 * 44100) / 44100      # 20 s: 14 kB of latents, 28 kB of latent wav
    sf.write(tmp_path / "long.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 44100)
    with full_tmpfs(tmp_path / "full", size="16k") as full:
        r = run("encode", "-m", "default", tmp_path / "long.wav", "--latent-wav", "-o", full)
        one_line_error(r, "cannot write")
        assert list(full.iterdir()) == []


# ------------------------------------------------------------------ what is not ours

def test_stats_plot_never_replaces_a_device_fifo_or_folder(tmp_path, inputs):
    """Only a new name or (forced) a regular file is replaced; nothing else, not even forced."""
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "elsewhere.png")
    targets = {fifo: "not a regular file", folder: "is a folder", link: "symbolic link"}
    try:
        os.mknod(tmp_path / "null.png", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets[tmp_path / "null.png"] = "not a regular file"
    except PermissionError:
        pass    # a device node needs root; the fifo stands for it
    before = sorted(os.listdir(tmp_path))
    for target, why in targets.items():
        one_line_error(run("stats", inputs / "lat.npy", "--plot", target, "--force"),
                       target.name, why, "not replacing it")
    assert sorted(os.listdir(tmp_path)) == before                   # no temp file left
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and folder.is_dir() and link.is_symlink()
    if (tmp_path / "null.png").exists():
        assert stat.S_ISCHR(os.lstat(tmp_path / "null.png").st_mode)


def test_existing_files_are_kept_unless_forced(tmp_path, inputs):
    plot = tmp_path / "p.png"
    plot.write_bytes(b"mine")
    one_line_error(run("stats", inputs / "lat.npy", "--plot", plot), "p.png", "already exists")
    assert plot.read_bytes() == b"mine"
    r = run("stats", inputs / "lat.npy", "--plot", plot, "--force")
    assert r.returncode == 0, r.stderr
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert temp_files(tmp_path) == []


# ------------------------------------------------------------------ names stay in their folder

@pytest.mark.parametrize("name", ["../../../escape", "sub/x", "..", ""])
def test_diffuse_name_may_not_leave_the_output_folder(tmp_path, name):
    out = tmp_path / "a" / "b" / "c"
    one_line_error(run("diffuse", "--name", name, "--seed", "1", "--steps", "1", "-o", out),
                   "name", "may not leave its folder")
    assert files_in(tmp_path) == []


def test_train_name_may_not_leave_the_output_folder(tmp_path, inputs):
    one_line_error(run("train-diffusion", inputs, "--name", "../escape", "-o", tmp_path / "o"),
                   "name '../escape'", "may not leave its folder")
    assert files_in(tmp_path) == []


# ------------------------------------------------------------------ whole sets or nothing

def test_encode_writes_npy_and_latent_wav_together_or_not_at_all(tmp_path, inputs):
    """The .npy (float32) fits under the file-size limit, its latent wav (float64) does not:
    before, the .npy stayed alone."""
    ok = run("encode", "-m", "default", inputs / "tone.wav", "--latent-wav", "-o", tmp_path / "ok")
    assert ok.returncode == 0, ok.stderr
    npy, lwav = (tmp_path / "ok" / "tone.npy").stat().st_size, (tmp_path / "ok" / "tone.latent.wav").stat().st_size
    assert npy < lwav
    r = run("encode", "-m", "default", inputs / "tone.wav", "--latent-wav", "-o", tmp_path / "cut",
            fsize=(npy + lwav) // 2)
    one_line_error(r, "tone.latent.wav", "cannot write")
    assert files_in(tmp_path / "cut") == []


def test_generate_writes_its_three_files_together_or_not_at_all(tmp_path, inputs):
    ok = run("generate", inputs / "lat.npy", "--points", "200", "-o", tmp_path / "ok")
    assert ok.returncode == 0, ok.stderr
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "ok").iterdir()}
    npy = sizes["default-normal-001.npy"]
    lwav = sizes["default-normal-001.latent.wav"]
    assert npy < lwav
    r = run("generate", inputs / "lat.npy", "--points", "200", "-o", tmp_path / "cut",
            fsize=(npy + lwav) // 2)
    one_line_error(r, "latent.wav", "cannot write")
    assert files_in(tmp_path / "cut") == []


def test_diffuse_checks_every_file_of_a_set_before_writing_any(tmp_path):
    """A folder in the way of the sidecar: before, the wav and npy were written, then the
    sidecar failed (a raw IsADirectoryError and a half set); now nothing is written."""
    out = tmp_path / "out"
    (out / "x_1.json").mkdir(parents=True)
    one_line_error(run("diffuse", "--name", "x", "--seed", "1", "--steps", "1", "--save-latents",
                       "--force", "-o", out), "x_1.json", "is a folder")
    assert files_in(out) == []
    assert sorted(os.listdir(out)) == ["x_1.json"]
