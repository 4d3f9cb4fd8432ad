"""unravel.safewrite: the one function every writer goes through (issue 16): a new name or a
regular file only, existing files only with force, a unique temporary name in the same
folder, removed on any failure; torch serialized in memory (no abort on a full disk)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from unravel import latents, safewrite
from unravel.bend import Bender
from unravel.errors import UnravelError
from unravel.model import load_model


def test_new_name_and_force(tmp_path):
    p = tmp_path / "a.bin"
    safewrite.write_bytes(p, b"one")
    assert p.read_bytes() == b"one"
    with pytest.raises(UnravelError, match="already exists"):
        safewrite.write_bytes(p, b"two")
    assert p.read_bytes() == b"one"
    safewrite.write_bytes(p, b"two", force=True)
    assert p.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_refuses_what_is_not_a_regular_file_even_with_force(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "target").write_text("t")
    os.symlink(tmp_path / "target", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    for name, cause in (("dir", "is a folder"), ("link", "symbolic link"), ("fifo", "not a regular file")):
        with pytest.raises(UnravelError, match=cause):
            safewrite.write_bytes(tmp_path / name, b"x", force=True)
    assert (tmp_path / "target").read_text() == "t" and os.path.islink(tmp_path / "link")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["dir", "fifo", "link", "target"]


def test_temp_names_are_unique_and_removed_on_any_failure(tmp_path):
    seen = []

    def boom(tmp):
        seen.append(tmp)
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            safewrite.write_file(tmp_path / "x.npy", boom)
    assert len(set(seen)) == 2 and all(os.path.dirname(t) == str(tmp_path) for t in seen)
    assert os.listdir(tmp_path) == []

    def full(tmp):
        raise OSError(28, "No space left on device")
    with pytest.raises(UnravelError, match=r"x.npy: cannot write \(No space left on device\)"):
        safewrite.write_file(tmp_path / "x.npy", full)
    assert os.listdir(tmp_path) == []


def test_a_fixed_old_temp_name_is_not_touched(tmp_path):
    (tmp_path / "o.tmp").write_text("mine")
    latents.write_json(tmp_path / "o", {"a": 1})
    assert (tmp_path / "o.tmp").read_text() == "mine"


def test_check_name():
    from unravel.audio import check_name
    assert check_name("loop-001", "diffuse --name") == "loop-001"
    for bad in ("", " ", "../x", "a/b", ".", ".."):
        with pytest.raises(UnravelError, match="diffuse --name"):
            check_name(bad, "diffuse --name")


def test_bender_save_serializes_in_memory_and_refuses_without_force(tmp_path):
    b = Bender(load_model("default", warmup=False))
    p = b.save(tmp_path / "m.ts")
    assert torch.jit.load(str(p)) is not None
    with pytest.raises(UnravelError, match="already exists"):
        b.save(p)
    b.save(p, force=True)
    assert os.listdir(tmp_path) == ["m.ts"]
