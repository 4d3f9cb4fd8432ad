"""Voices: [unravel~] objects that share one model call (`poly 1`, live mode).

The objects of one model file (on one device, with the file's weights: never edited) that
run the same method on blocks of the same size form a `Group`. The group holds its own copy
of the module; each object (a `Member`) has a fixed batch index in it, its slot, where a
streaming export keeps its caches (RAVE's are sized for 64 items). Each object's model
thread puts its block in and waits; the first to see that every regular member is in, or
that the deadline passed (a quarter of a block after the first arrival), runs one batched
call for those in and hands each its slice. A member that misses a round is not advanced
(the call runs as many items as members are in, their states gathered into the first slots
and put back after it) and its block runs in the next round. So each object plays what a
private object plays, up to the rounding of batched arithmetic (oneDNN's convolutions round a batch of 8 differently
from a batch of 1: about 1e-6; see docs/ARCHITECTURE.md).

An object's state moves with it: joining copies the object's own state (its Model's batch
index 0) into its slot, leaving copies its slot back, so that joining or leaving changes
nothing of what it plays and nothing of the other members' state. A member leaves when its
model is edited (bend, weights, attributes), reloaded from a changed file or moved to
another device, when its object takes another runner (method, bufsize, `poly 0`) and when
it is freed.
"""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
import torch

from unravel import modelcache
from unravel.errors import UnravelError, short_cause

MAX_VOICES = 64      # members of a group of a model without per-voice state
_GROUPS: "weakref.WeakValueDictionary[tuple, Group]" = weakref.WeakValueDictionary()
_HOME: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # Model -> the Member holding its state
_LOCK = threading.Lock()
_DEADLINE = 0.25     # of a block's duration: how long a round waits for its last members


def group_for(model, method: str, block: int) -> tuple["Group | None", str]:
    """The group of `model`'s `method` on blocks of `block` audio frames, made at its first
    member (on the caller's thread: the module read from the file again, or copied from the
    model's when the file changed, and two probe calls), or None and the reason the model
    cannot share its calls."""
    if model.edits:
        return None, f"poly: {model.path.name} is edited (bent, weights or attributes set): it plays alone"
    key = (model._file_key, str(model.device), method, block)
    with _LOCK:
        g = _GROUPS.get(key)
    if g is not None:
        return g, ""
    try:
        g = Group(key, model, method, block)
    except UnravelError as e:
        return None, f"poly: {e}: it plays alone"
    with _LOCK:
        return _GROUPS.setdefault(key, g), ""


def take_back(model) -> None:
    """Give `model`'s module back the state one of its voices holds in a group (it then plays
    alone); nothing when none does."""
    m = _HOME.get(model)
    if m is not None:
        m.leave()


class Group:
    """The objects of one file, device, method and block size: one module, one call per round."""

    def __init__(self, key: tuple, model, method: str, block: int):
        self.key = key
        self.path, self.device, self.method = model.path, model.device, method
        mp = model.methods[method]
        self.in_chans, self.in_frames = mp.in_channels, block // mp.in_ratio
        self.deadline = _DEADLINE * block / model.sr
        if model.file_unchanged():      # the export's caches (for 64 voices), whatever
            self.cmod = modelcache.read_module(model.path, model.device)._c   # a private object's hold
        else:
            with model.lock:
                self.cmod = modelcache.jit_copy(model._cmod)
        self.fn = self.cmod._get_method(method)
        self.items, self.capacity = self._per_voice(model)
        self.x = torch.zeros(self.capacity, self.in_chans, self.in_frames)
        self.cond = threading.Condition()
        self.members: list[Member] = []
        self.waiting: list[Member] = []
        self.first: float | None = None     # when the first block of the next round came
        self.running = False
        self.rounds = 0

    def _per_voice(self, model) -> tuple[list[str], int]:
        """The buffers that hold per-voice state (those that running the method changes; their
        first dimension is the batch index) and how many voices they hold. Refuses a module
        whose running changes anything else (a counter, a buffer of another shape)."""
        for name in modelcache.written(self.cmod, [self.method]):
            if name in ("*", ""):
                continue
            try:
                v = modelcache.tensor(self.cmod, name)
            except Exception:  # noqa: BLE001 - a submodule, not a value
                continue
            if isinstance(v, (bool, int, float)):
                raise UnravelError(f"{self.path.name}: {self.method} keeps state that is not per voice ('{name}')")
        wrapper = torch.jit._recursive.wrap_cpp_module(self.cmod)
        before = {n: b.clone() for n, b in wrapper.named_buffers()}
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, self.in_chans, self.in_frames, generator=gen) * 0.1
        try:
            with torch.inference_mode():
                for _ in range(2):
                    self._call(x)
        except UnravelError:
            raise UnravelError(f"{self.path.name}: {self.method} does not take a batch") from None
        bufs = dict(wrapper.named_buffers())
        changed = [n for n, b in bufs.items() if not torch.equal(b, before[n])]
        dims = {bufs[n].shape[0] if bufs[n].dim() else 0 for n in changed}
        if not changed:
            return [], MAX_VOICES
        if len(dims) != 1 or min(dims) < 2:
            raise UnravelError(f"{self.path.name}: {self.method} keeps state that is not per voice")
        return changed, min(dims.pop(), MAX_VOICES)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        """The method on a batch, as Model.run runs it (inference mode, denormals flushed)."""
        try:
            torch.set_flush_denormal(True)
            with torch.inference_mode():
                y = self.fn(x if self.device.type == "cpu" else x.to(self.device))
            return y if self.device.type == "cpu" else y.cpu()
        except Exception as e:  # noqa: BLE001 - TorchScript errors come as several types
            raise UnravelError(f"{self.path.name}: {self.method} failed ({short_cause(e)})") from None
        finally:
            torch.set_flush_denormal(False)

    def _call_gathered(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """The call for the members in `slots` (sorted), their states in the first slots."""
        k = len(slots)
        states = [self._state(name) for name in self.items]
        kept = [s[:k].clone() for s in states]
        for s in states:
            s[:k].copy_(s.index_select(0, slots))
        try:
            return self._call(x)
        finally:
            for s, old in zip(states, kept):
                new = s[:k].clone()
                s[:k].copy_(old)
                s.index_copy_(0, slots, new)

    def _state(self, name: str) -> torch.Tensor:
        return modelcache.tensor(self.cmod, name)

    def _settle(self) -> None:
        """Wait (cond held) until no round runs."""
        while self.running:
            self.cond.wait()

    def _publish(self) -> None:
        for m in self.members:
            m.status[0] = len(self.members)

    def _add(self, m: "Member") -> bool:
        """Take `m` in (cond held): its model's state into the lowest free slot."""
        self._settle()
        if len(self.members) >= self.capacity:
            return False
        used = {o.slot for o in self.members}
        m.slot = next(s for s in range(self.capacity) if s not in used)
        with m.model.lock:
            for name in self.items:
                self._state(name)[m.slot].copy_(modelcache.tensor(m.model._cmod, name)[0])
        m.regular = True
        self.members.append(m)
        _HOME[m.model] = m
        self._publish()
        return True

    def _remove(self, m: "Member") -> None:
        """Let `m` go (cond held): its state back into its model when it is kept there, the
        last slot's member moved into its slot."""
        self._settle()
        if m not in self.members:
            return
        if _HOME.get(m.model) is m:
            with m.model.lock:
                for name in self.items:
                    modelcache.tensor(m.model._cmod, name)[0].copy_(self._state(name)[m.slot])
            del _HOME[m.model]
        self.members.remove(m)
        if m in self.waiting:
            self.waiting.remove(m)
        last = max(self.members, key=lambda o: o.slot, default=None)
        if last is not None and last.slot > m.slot:
            for name in self.items:
                s = self._state(name)
                s[m.slot].copy_(s[last.slot])
            last.slot = m.slot
        m.slot = None
        m.status[0] = 0
        self._publish()

    def _round(self) -> None:
        """Run the waiting members' blocks in one call (cond held; released during the call):
        a batch of as many items as members are in. When they do not hold the first slots,
        their states go to the first ones for the call and back after it, and those slots'
        own states are put back: a member not in the round is not advanced."""
        batch, self.waiting, self.first = sorted(self.waiting, key=lambda m: m.slot), [], None
        self.running = True
        k, slots = len(batch), [m.slot for m in batch]
        y, err = None, ""
        self.cond.release()
        try:
            x = self.x[:k]
            for i, m in enumerate(batch):
                x[i].copy_(m.x[0])
            if not self.items or slots[-1] == k - 1:
                y = self._call(x)
            else:
                y = self._call_gathered(x, torch.tensor(slots))
        except Exception as e:  # noqa: BLE001 - every member hears of it, none waits forever
            err = str(e) if isinstance(e, UnravelError) else f"{self.path.name}: {short_cause(e)}"
        finally:
            self.cond.acquire()
        self.running = False
        self.rounds += 1
        for i, m in enumerate(batch):
            m.y = None if y is None else y[i:i + 1]
            m.error = err
            m.done = True
            m.status[1] = len(batch)
        if len(batch) > 1 or len(self.members) == 1:
            for m in self.members:      # who is not in step is not waited for
                m.regular = m in batch
        for m in batch + self.waiting:  # done, or to see whether their round can run now
            m.wake.set()
        self.cond.notify_all()          # who waits for no round to run (_settle)

    def _ready(self) -> bool:
        """Whether the waiting round runs now: every regular member is in, or its time is up."""
        if self.running or not self.waiting:
            return False
        if all(m in self.waiting for m in self.members if m.regular):
            return True
        return time.monotonic() >= self.first + self.deadline


class Member:
    """One object's voice in a group: its input block `x` (1, channels, frames) and `status`
    (int32: the group's members, the items of its last call; read by the C side for `bang`)."""

    def __init__(self, group: Group, model, x: torch.Tensor, status: np.ndarray):
        self.group, self.model, self.x, self.status = group, model, x, status
        self.slot: int | None = None
        self.regular = True
        self.done = False
        self.wake = threading.Event()   # set by a round's end: done, or look again
        self.y: torch.Tensor | None = None
        self.error = ""

    def _valid(self) -> bool:
        g, m = self.group, self.model
        return m.edits == 0 and m.device == g.device and m._file_key == g.key[0]

    def run(self) -> torch.Tensor | None:
        """The member's output block (1, channels, frames) from the next round; None once it
        has left the group (its model changed, or the group is full): it then plays alone."""
        g = self.group
        if self.slot is None:
            if not self._valid():
                return None
            if _HOME.get(self.model) is not None and _HOME[self.model] is not self:
                take_back(self.model)
        with g.cond:
            if self.slot is None and not g._add(self):
                return None
            if not self._valid():
                g._remove(self)
                return None
            self.done = False
            self.wake.clear()
            g.waiting.append(self)
            if g.first is None:
                g.first = time.monotonic()
            if g._ready():
                g._round()
        while not self.done:
            # its own event, not the group's lock: a round's end wakes its members at once
            first = g.first
            self.wake.wait(None if g.running or first is None else
                           max(0.0, first + g.deadline - time.monotonic()))
            with g.cond:
                self.wake.clear()
                if not self.done and g._ready():
                    g._round()
        if self.error:
            raise UnravelError(self.error)
        return self.y

    def leave(self) -> None:
        """Leave the group (its state back into its model); nothing if it is not in it."""
        g = self.group
        with g.cond:
            if self.slot is not None:
                g._remove(self)
