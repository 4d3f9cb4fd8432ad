"""unravel.jobproc without Pd: an UnRAVEl job runs in a child process with this Python; a
cancelled job (bridge.Cancelled raised in its thread, as the C side does) ends its child
and leaves no file behind; SIGTERM makes the child leave through its cleanup; a child whose
parent dies ends by itself."""

from __future__ import annotations

import ctypes
import gc
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from unravel import bridge, jobproc, pipeline
from unravel.errors import UnravelError
from unravel.model import DEFAULT_MODEL

GENERATE = ["files", 10000.0, "points", 11.0]     # a long job that writes files all along


def jobproc_children(parent: int) -> dict[int, list[str]]:
    """pid -> argv of the processes whose parent is `parent` and that run unravel.jobproc."""
    kids = {}
    for p in pathlib.Path("/proc").iterdir():
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (p / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and "unravel.jobproc" in argv:
            kids[int(p.name)] = argv[:-1]
    return kids


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def wait_until(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def latents(folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir(exist_ok=True)
    np.save(folder / "z.npy", np.random.default_rng(0).standard_normal((1, 8, 40)).astype(np.float32))
    return folder / "z.npy"


def no_partial_file(folder: pathlib.Path) -> None:
    """No temporary file left, and every .npy written is whole."""
    files = list(folder.iterdir()) if folder.exists() else []
    assert not [f for f in files if ".tmp" in f.name], files
    for f in files:
        if f.suffix == ".npy":
            np.load(f)


def test_a_job_runs_in_a_child_process_of_this_python(tmp_path):
    """While a job runs, this process has one child running `<sys.executable> -m
    unravel.jobproc`; the reply is the job's (the paths it wrote). The child stays for the
    session's next jobs (the same process: no start, no import, the model loaded once; a
    job's own error does not end it) and ends with the session."""
    z = latents(tmp_path)
    s = bridge.Session("default")
    seen: dict[int, list[str]] = {}
    reply: list = []
    t = threading.Thread(target=lambda session: reply.extend(bridge.run_job(
        session, "decode", ["input", str(z), "output", "dec"], str(tmp_path))[0]), args=(s,))
    t.start()
    while t.is_alive():
        seen.update(jobproc_children(os.getpid()))
        time.sleep(0.02)
    assert reply == [str(tmp_path / "dec" / "z.wav")]
    assert [argv for argv in seen.values()] == [[sys.executable, "-m", "unravel.jobproc"]]
    (pid,) = seen
    assert running(pid)
    with pytest.raises(UnravelError, match="no such file"):
        bridge.run_job(s, "decode", ["input", "nope.npy", "output", "dec"], str(tmp_path))
    assert bridge.run_job(s, "decode", ["input", str(z), "output", "dec2"], str(tmp_path)) == (
        [str(tmp_path / "dec2" / "z.wav")], [])
    assert list(jobproc_children(os.getpid())) == [pid]
    del s
    gc.collect()
    wait_until(lambda: not running(pid), 10)


def test_a_bent_model_is_handed_over_again_after_each_change(tmp_path):
    """The kept child decodes with the session's model as it is at each job: bent after the
    first job, the next job's audio is the bent model's."""
    z = latents(tmp_path)
    s = bridge.Session("default")
    plain = bridge.run_job(s, "decode", ["input", str(z), "output", "a"], str(tmp_path))[0][0]
    s.bender.bend("decoder.net.0.bias", "offset", 0.5)
    bent = bridge.run_job(s, "decode", ["input", str(z), "output", "b"], str(tmp_path))[0][0]
    again = bridge.run_job(s, "decode", ["input", str(z), "output", "c"], str(tmp_path))[0][0]
    ref = pipeline.decode_files(s.model, [z], tmp_path / "ref", progress=False)[0]
    read = [sf.read(p, dtype="float32")[0] for p in (plain, bent, again, ref)]
    assert not np.array_equal(read[0], read[1])
    assert np.array_equal(read[1], read[3]) and np.array_equal(read[2], read[3])
    s.jobs.close()


def test_errors_come_back_as_one_line(tmp_path, monkeypatch):
    """The job's own error, and a child that dies without a reply: one UnravelError line
    naming the job."""
    s = bridge.Session("default")
    with pytest.raises(UnravelError, match=r"nope\.npy: no such file"):
        bridge.run_job(s, "decode", ["input", "nope.npy"], str(tmp_path))
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n"
                    "echo 'ModuleNotFoundError: No module named unravel' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    s.jobs.close()                      # the next job starts a child (the fake one)
    with pytest.raises(UnravelError) as e:
        bridge.run_job(s, "stats", ["input", "z.npy"], str(tmp_path))
    assert str(e.value) == "stats: the job process failed (No module named unravel)"


def test_a_cancelled_job_ends_its_child_and_leaves_no_file(tmp_path, monkeypatch):
    """bridge.Cancelled raised in the job's thread (as pyembed.c does when the object is freed
    or Pd quits) while the child writes files: the thread ends at once with Cancelled, the
    child is gone, no temporary or partial file is left. A bent model's module is handed over
    in a temporary folder, which the child removes once it has loaded it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    z = latents(tmp_path)
    s = bridge.Session("default")
    s.bender.bend("decoder.net.0.bias", "offset", 0.1)        # handed over as a file
    out = tmp_path / "gen"
    caught: list[BaseException] = []

    def job() -> None:
        try:
            bridge.run_job(s, "generate", ["input", str(z), "output", str(out), *GENERATE], str(tmp_path))
        except BaseException as e:  # noqa: BLE001
            caught.append(e)
    t = threading.Thread(target=job)
    t.start()
    wait_until(lambda: out.exists() and len(list(out.iterdir())) >= 6)
    kids = jobproc_children(os.getpid())
    assert len(kids) == 1 and list((tmp_path / "tmp").iterdir()) == []
    t0 = time.monotonic()
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(bridge.Cancelled))
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < jobproc.STOP_GRACE + 1
    assert len(caught) == 1 and isinstance(caught[0], bridge.Cancelled), caught
    assert not [pid for pid in kids if running(pid)]
    no_partial_file(out)
    assert list((tmp_path / "tmp").iterdir()) == []


def child(tmp_path: pathlib.Path, out: pathlib.Path) -> subprocess.Popen:
    """`python -m unravel.jobproc` on a long generate job into `out`."""
    import json
    z = latents(tmp_path)
    job = {"job": "generate", "args": ["input", str(z), "output", str(out), *GENERATE],
           "patch_dir": str(tmp_path),
           "model": {"path": str(DEFAULT_MODEL), "device": "cpu", "sr": 44100, "module": None}}
    p = subprocess.Popen([sys.executable, "-m", "unravel.jobproc"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL)
    p.stdin.write(json.dumps(job).encode() + b"\n")
    p.stdin.close()
    return p


def test_sigterm_ends_the_child_through_its_cleanup(tmp_path):
    """SIGTERM while the child writes files: it leaves through SystemExit (exit status
    128 + 15, not killed by the signal), and no temporary or partial file is left."""
    for k, delay in enumerate((0.0, 0.031, 0.077)):
        out = tmp_path / f"gen{k}"
        p = child(tmp_path, out)
        wait_until(lambda: out.exists() and len(list(out.iterdir())) >= 3)
        time.sleep(delay)
        p.terminate()
        assert p.wait(10) == 128 + signal.SIGTERM
        no_partial_file(out)


def test_the_child_ends_when_its_parent_dies(tmp_path):
    """A parent killed outright (Pd crashing, SIGKILL) cannot stop its child: the child sees
    it is orphaned and ends by itself, through its cleanup."""
    out = tmp_path / "gen"
    z = latents(tmp_path)
    args = ["input", str(z), "output", str(out), *GENERATE]
    code = f"from unravel import bridge; bridge.run_job(bridge.Session('default'), 'generate', {args!r}, '')"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_until(lambda: out.exists() and len(list(out.iterdir())) >= 3)
        (pid,) = jobproc_children(parent.pid)
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: not running(pid), timeout=10)
    no_partial_file(out)
