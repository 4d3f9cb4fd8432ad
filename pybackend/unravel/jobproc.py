"""UnRAVEl jobs in a child process, so that they never hold the GIL or a model's lock that
the live audio of [unravel~] waits for.

Parent (`Worker`, one per [unravel~] session, called by `bridge.run_job` on the object's job
thread): starts `python -m unravel.jobproc` with the interpreter that runs unravel
(`sys.executable`: the `python=` of unravel.cfg inside Pd) at the first job and keeps it for
the next ones (the start, torch's import, the model and a diffusion checkpoint are paid once:
a job then takes what its work takes); writes each job to its stdin as one JSON line, then
waits for the reply line with short timeouts so that an exception raised in its thread (a
cancelled job) lands at once. A cancelled job, a child that failed, `close()` (the session
freed) and `IDLE` seconds without a job end the child (SIGTERM, SIGKILL after `STOP_GRACE`
s). The child loads the model again when it changed (another Model, bent, weights or
attributes set: `Model.edits`, or moved): a model changed in memory (not shared with its
file) is handed over as a TorchScript file in a temporary folder, removed by the child once
it has loaded it (and by the parent after the job).

Pd arrays a job reads and writes travel in the same JSON lines (`pdarrays.pack`).

Child (`main`): started by a thread that runs below the audio (nice > 0: a live [unravel~]'s
job thread), lowers its priority further (Linux: SCHED_IDLE, the CPU time nothing else wants;
elsewhere nice 10); started by a normal one (Pd under -batch, which waits for each job) it
keeps it, so that other busy processes do not starve what Pd waits for. It runs one torch
thread, keeps its own copy of the model, runs each job with the job table
(`jobs.run_here`) and writes one JSON line to stdout per job,
`{"result": [...], "arrays": [...]}` (str and float; the arrays it wrote) or `{"error":
"<job>: cause"}`. SIGTERM, and the death of the parent, raise SystemExit, so the safe
writers remove their temporary files; the end of its stdin ends it.
"""

from __future__ import annotations

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
import weakref
from typing import TYPE_CHECKING

from unravel import pdarrays
from unravel.errors import UnravelError, first_line, silence_warnings
from unravel.pdarrays import PdArrays

if TYPE_CHECKING:
    from unravel.model import Model

POLL = 0.05          # s between looks at the child (and chances for a cancellation to land)
STOP_GRACE = 1.5     # s from SIGTERM to SIGKILL (Pd's quit waits 2 s for the job thread)
NICE = 10            # the child's priority where there is no SCHED_IDLE
STDERR_KEEP = 8192   # bytes of the child's stderr kept for the error line
ORPHAN_POLL = 0.2    # s between the child's looks at its parent
IDLE = 300.0         # s without a job after which a Worker ends its child


# --------------------------------------------------------------------------- parent


class Worker:
    """The job process of one [unravel~] session, started by its first job and kept for the
    next ones (see the module's docstring). One job at a time."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.err = bytearray()          # the end of the child's stderr
        self.model = None               # weakref to the Model the child has, its edits, device
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def run(self, model: "Model", name: str, args: list, patch_dir: str,
            pd: "PdArrays | None" = None) -> list:
        """Run job `name` with Pd's `args` (and the Pd arrays in `pd`) in the child on its
        own copy of `model`; returns the job's reply values (str and float), the arrays it
        wrote added to `pd.outputs`, or raises UnravelError("<name>: cause")."""
        if not sys.executable:
            raise UnravelError(f"{name}: no Python to run the job in (sys.executable is empty)")
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
            mark = (weakref.ref(model), model.edits, str(model.device))
            if self.proc is None or self.proc.poll() is not None:
                self._stop()
                self._start()
            same = self.model is not None and self.model[0]() is model and self.model[1:] == mark[1:]
            from_file = model.shared and model.file_unchanged()    # else: the module in memory
            tmp = None if same or from_file else tempfile.mkdtemp(prefix="unravel-job-")
            try:
                spec = {"path": str(model.path), "device": str(model.device), "sr": int(model.sr),
                        "module": tmp and save_module(model, tmp), "same": same}
                job = {"job": name, "args": list(args), "patch_dir": patch_dir, "model": spec,
                       "arrays": {k: pdarrays.pack(v) for k, v in pd.inputs.items()} if pd else {},
                       "sr": pd.sr if pd else 0.0}
                self.model = None       # until the child has it
                try:
                    self.proc.stdin.write(json.dumps(job).encode() + b"\n")
                    self.proc.stdin.flush()
                except OSError:
                    pass                # the child is gone already: its stderr says why
                reply = _reply_of(name, *self._reply())
                if reply.get("loaded"):
                    self.model = mark
            except BaseException:
                self._stop()
                raise
            finally:
                if tmp:
                    shutil.rmtree(tmp, ignore_errors=True)
            self.timer = threading.Timer(IDLE, self._idle)
            self.timer.daemon = True
            self.timer.start()
        if "error" in reply:            # the job's own error: the child goes on
            raise UnravelError(str(reply["error"]))
        if pd is not None:
            pd.outputs += pdarrays.unpack(reply.get("arrays", []))
        return reply["result"]

    def close(self) -> None:
        """End the child (the session is freed)."""
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            self._stop()

    def _idle(self) -> None:
        if self.lock.acquire(blocking=False):
            try:
                self._stop()
            finally:
                self.lock.release()

    def _start(self) -> None:
        self.err = bytearray()
        self.model = None
        self.proc = subprocess.Popen([sys.executable, "-m", "unravel.jobproc"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        os.set_blocking(self.proc.stderr.fileno(), False)

    def _stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        self.proc, self.model = None, None

    def _reply(self) -> tuple[int | None, bytes, bytes]:
        """(the child's exit status or None, its next stdout line, the end of its stderr);
        never blocks longer than POLL."""
        out = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ, out)
            sel.register(self.proc.stderr, selectors.EVENT_READ, self.err)
            while sel.get_map():
                for key, _ in sel.select(POLL):
                    try:
                        data = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(key.fileobj)
                    key.data.extend(data)
                    del self.err[:-STDERR_KEEP]
                    if key.data is out and b"\n" in out:
                        return None, bytes(out), bytes(self.err)
        while self.proc.poll() is None:     # stdout closed without a reply: it ends
            try:
                self.proc.wait(POLL)
            except subprocess.TimeoutExpired:
                pass
        return self.proc.returncode, bytes(out), bytes(self.err)


def save_module(model: "Model", folder: str) -> str:
    """The model's module as it is now (bent weights, attributes) saved with torch.jit.save
    into `folder`; returns the file's path. Serialized under the model's lock, in memory."""
    from unravel.modelcache import module_bytes
    with model.lock:
        data = module_bytes(model.module)
    path = os.path.join(folder, "model.ts")
    with open(path, "wb") as f:
        f.write(data)
    return path


def _reply_of(name: str, rc: int | None, out: bytes, err: bytes) -> dict:
    """The child's reply line as a dict ({"result", "arrays", "loaded"} or {"error",
    "loaded"}); UnravelError when the child ended without one (the last line of its
    stderr)."""
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else None
    except ValueError:
        reply = None
    if rc is None and isinstance(reply, dict) and (
            "error" in reply or isinstance(reply.get("result"), list)):
        return reply
    errs = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    why = first_line(Exception(errs[-1])) if errs else (
        f"killed by signal {-rc}" if rc and rc < 0 else f"exit status {rc}")
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


def run(job: dict, have: dict) -> tuple[list, list]:
    """Run a job description (see Worker.run) in this process; returns the reply values and
    the arrays it wrote (packed). `have` keeps the model between jobs ({'model': Model}): the
    job's says whether it is still the one (`same`), else where to load it from."""
    import pathlib
    from unravel import jobs
    from unravel.model import Model, set_threads
    set_threads(1)
    spec = job["model"]
    if not (spec.get("same") and have.get("model") is not None):
        have["model"] = None
        if spec["module"]:
            try:
                model = Model(spec["module"], sr=spec["sr"], device=spec["device"], share=False)
            finally:    # loaded: the parent's folder is not needed any more (nor left if it died)
                shutil.rmtree(os.path.dirname(spec["module"]), ignore_errors=True)
        else:
            model = Model(spec["path"], sr=spec["sr"], device=spec["device"], share=False)
        model.path = pathlib.Path(spec["path"])   # named as the object's model (messages, sidecars)
        have["model"] = model
    pd = PdArrays({k: pdarrays.unpack(v) for k, v in job.get("arrays", {}).items()},
                  job.get("sr", 0.0))
    values = jobs.run_here(have["model"], job["job"], job["args"], job["patch_dir"], pd)
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
    """`python -m unravel.jobproc`: jobs from stdin, one JSON line each, each reply on stdout."""
    silence_warnings()
    signal.signal(signal.SIGTERM, _on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if hasattr(os, "getpriority") and os.getpriority(os.PRIO_PROCESS, 0) > 0:
        lower_priority()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    have: dict = {}
    for line in sys.stdin.buffer:
        name = "job"
        try:
            job = json.loads(line)
            name = str(job.get("job", name))
            values, arrays = run(job, have)
            reply = {"result": values, "arrays": arrays}
        except UnravelError as e:
            reply = {"error": str(e)}
        except Exception as e:  # noqa: BLE001 - the parent gets one line
            reply = {"error": f"{name}: {first_line(e)}"}
        reply["loaded"] = have.get("model") is not None
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
