"""An UnRAVEl job in a child process, so that it never holds the GIL or a model's lock that
the live audio of [unravel~] waits for.

Parent (`run_in_child`, called by `bridge.run_job` on the object's job thread): starts
`python -m unravel.jobproc` with the interpreter that runs unravel (`sys.executable`: the
`python=` of unravel.cfg inside Pd), writes the job to its stdin as one JSON line, then
waits with short timeouts so that an exception raised in its thread (a cancelled job) lands
at once; on every way out it ends the child (SIGTERM, SIGKILL after `STOP_GRACE` s). A
model changed in memory (bent, weights or attributes set: not shared with its file) is
handed over as a TorchScript file in a temporary folder, removed by the child once it has
loaded it (and by the parent at the end).

Pd arrays a job reads and writes travel in the same JSON lines (`pdarrays.pack`).

Child (`main`): lowers its priority (Linux: SCHED_IDLE, the CPU time nothing else wants;
elsewhere nice 10), runs one torch thread, loads its own copy of the model
and runs the job with bridge's job table (`bridge.run_here`); writes one JSON line to stdout,
`{"result": [...], "arrays": [...]}` (str and float; the arrays it wrote) or `{"error": "<job>: cause"}`. SIGTERM, and the death
of the parent, raise SystemExit, so the safe writers remove their temporary files.
"""

from __future__ import annotations

import io
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING

from unravel import pdarrays
from unravel.errors import UnravelError, first_line
from unravel.pdarrays import PdArrays

if TYPE_CHECKING:
    from unravel.model import Model

POLL = 0.05          # s between looks at the child (and chances for a cancellation to land)
STOP_GRACE = 1.5     # s from SIGTERM to SIGKILL (Pd's quit waits 2 s for the job thread)
NICE = 10            # the child's priority where there is no SCHED_IDLE
STDERR_KEEP = 8192   # bytes of the child's stderr kept for the error line
ORPHAN_POLL = 0.2    # s between the child's looks at its parent


# --------------------------------------------------------------------------- parent


def run_in_child(model: "Model", name: str, args: list, patch_dir: str,
                 pd: "PdArrays | None" = None) -> list:
    """Run job `name` with Pd's `args` (and the Pd arrays in `pd`) in a child process on its
    own copy of `model`; returns the job's reply values (str and float), the arrays it wrote
    added to `pd.outputs`, or raises UnravelError("<name>: cause")."""
    if not sys.executable:
        raise UnravelError(f"{name}: no Python to run the job in (sys.executable is empty)")
    tmp = None if model.shared else tempfile.mkdtemp(prefix="unravel-job-")
    proc = None
    try:
        job = {"job": name, "args": list(args), "patch_dir": patch_dir,
               "arrays": {k: pdarrays.pack(v) for k, v in pd.inputs.items()} if pd else {},
               "sr": pd.sr if pd else 0.0,
               "model": {"path": str(model.path), "device": str(model.device), "sr": int(model.sr),
                         "module": tmp and save_module(model, tmp)}}
        proc = subprocess.Popen([sys.executable, "-m", "unravel.jobproc"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            proc.stdin.close()
        except OSError:
            pass                # the child is gone already: its stderr says why
        out, err = _collect(proc)
        values, arrays = _result(name, proc.returncode, out, err)
        if pd is not None:
            pd.outputs += arrays
        return values
    finally:
        if proc is not None:
            stop(proc)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def save_module(model: "Model", folder: str) -> str:
    """The model's module as it is now (bent weights, attributes) saved with torch.jit.save
    into `folder`; returns the file's path. Serialized under the model's lock, in memory."""
    import torch
    buf = io.BytesIO()
    with model.lock:
        torch.jit.save(model.module, buf)
    path = os.path.join(folder, "model.ts")
    with open(path, "wb") as f:
        f.write(buf.getbuffer())
    return path


def _collect(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """The child's stdout and the end of its stderr, read until it closes both and exits;
    never blocks longer than POLL."""
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            for key, _ in sel.select(POLL):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                key.data.extend(data)
                del err[:-STDERR_KEEP]
    while proc.poll() is None:
        try:
            proc.wait(POLL)
        except subprocess.TimeoutExpired:
            pass
    return bytes(out), bytes(err)


def _result(name: str, rc: int, out: bytes, err: bytes) -> tuple[list, pdarrays.Arrays]:
    """The reply values and written arrays from the child's last stdout line, or its error
    as UnravelError."""
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else None
    except ValueError:
        reply = None
    if isinstance(reply, dict) and "error" in reply:
        raise UnravelError(str(reply["error"]))
    if rc == 0 and isinstance(reply, dict) and isinstance(reply.get("result"), list):
        return reply["result"], pdarrays.unpack(reply.get("arrays", []))
    errs = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    why = first_line(Exception(errs[-1])) if errs else (
        f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}")
    raise UnravelError(f"{name}: the job process failed ({why[:200]})")


def stop(proc: subprocess.Popen) -> None:
    """End the child if it still runs: SIGTERM (it removes its temporary files and exits),
    SIGKILL after STOP_GRACE s; closes the pipes. A second cancellation raised while this
    waits does not stop it halfway."""
    for _ in range(3):
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
            return
        except BaseException:  # noqa: BLE001 - a cancellation landing here: finish the stop
            continue


# --------------------------------------------------------------------------- child


def _on_term(signum: int, frame) -> None:
    """SIGTERM: leave through SystemExit (once: a second signal must not interrupt the
    cleanup that the first one started), back at the normal priority where allowed, so that
    the cleanup ends before the parent's SIGKILL on a busy machine."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(os, "SCHED_OTHER"):
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            pass
    raise SystemExit(128 + signum)


def _watch_parent(parent: int) -> None:
    """When the parent dies (this process is handed to another), end this process as
    SIGTERM does."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL)
    os.kill(os.getpid(), signal.SIGTERM)


def run(job: dict) -> tuple[list, list]:
    """Run a job description (see run_in_child) in this process; returns the reply values
    and the arrays it wrote (packed)."""
    import pathlib
    from unravel import bridge
    from unravel.model import Model, set_threads
    set_threads(1)
    spec = job["model"]
    if spec["module"]:
        try:
            model = Model(spec["module"], sr=spec["sr"], device=spec["device"], share=False)
        finally:    # loaded: the parent's folder is not needed any more (nor left if it died)
            shutil.rmtree(os.path.dirname(spec["module"]), ignore_errors=True)
    else:
        model = Model(spec["path"], sr=spec["sr"], device=spec["device"], share=False)
    model.path = pathlib.Path(spec["path"])   # named as the object's model (messages, sidecars)
    pd = PdArrays({k: pdarrays.unpack(v) for k, v in job.get("arrays", {}).items()},
                  job.get("sr", 0.0))
    values = bridge.run_here(model, job["job"], job["args"], job["patch_dir"], pd)
    return values, pdarrays.pack(pd.outputs)


def lower_priority() -> None:
    """Run this process below the audio: nice NICE, and on Linux SCHED_IDLE (with nice 10
    alone a busy child still made the live [unravel~] underrun; see bench/pd_job_underruns).
    Call it before any other thread starts: Linux sets both per thread."""
    try:
        os.nice(NICE)
    except OSError:
        pass
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


def main() -> None:
    """`python -m unravel.jobproc`: one job from stdin, its reply on stdout."""
    signal.signal(signal.SIGTERM, _on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    lower_priority()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    line = sys.stdin.buffer.readline()
    name = "job"
    try:
        job = json.loads(line)
        name = str(job.get("job", name))
        values, arrays = run(job)
        reply = {"result": values, "arrays": arrays}
    except UnravelError as e:
        reply = {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - the parent gets one line
        reply = {"error": f"{name}: {first_line(e)}"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
