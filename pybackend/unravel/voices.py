"""Voices: [unravel~] objects that share one model call (`poly 1`, live mode).

The objects of one model file (on one device, with the file's weights: never edited) that
run the same method on blocks of the same size form a `Group`. The group holds its own copy
of the module; each object (a `Member`) has a fixed batch index in it, its slot, where a
streaming export keeps its caches (RAVE's are sized for 64 items). `Group.round` runs the
blocks of the members that came in one batched call and hands each its slice: a call of as
many items as members came (their states gathered into the first slots and put back after
it), so a member that missed a round is not advanced and its block runs in the next one.
So each object plays what a private object plays, up to the rounding of batched arithmetic
(oneDNN's convolutions round a batch of 8 differently from a batch of 1: about 1e-6; see
docs/ARCHITECTURE.md).

Who comes to which round is decided in C (native/worker.c, `t_voices`): the group's own
model thread gathers the blocks of the objects' model threads and calls `round` once per
block, when every regular member is in or a quarter of a block after the first came
(`deadline`), so a late object never delays the others.

An object's state moves with it: joining copies the object's own state (its Model's batch
index 0) into its slot, leaving copies its slot back, so that joining or leaving changes
nothing of what it plays and nothing of the other members' state. A member leaves when its
model is edited (bend, weights, attributes), reloaded from a changed file or moved to
another device, when its object takes another runner (method, bufsize, `poly 0`) and when
it is freed.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
import torch

from unravel import modelcache
from unravel.errors import UnravelError, short_cause

MAX_VOICES = 64      # members of a group of a model without per-voice state
_GROUPS: "weakref.WeakValueDictionary[tuple, Group]" = weakref.WeakValueDictionary()
_HOME: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # Model -> the Member holding its state
_MAKING = threading.Lock()
_DEADLINE = 0.25     # of a block's duration: how long a round waits for its last members


def group_for(model, method: str, block: int) -> tuple["Group | None", str]:
    """The group of `model`'s `method` on blocks of `block` audio frames, made at its first
    member (on the caller's thread, one at a time: a copy of the shared module's template,
    or the module read from the file again, or copied from the model's when the file changed,
    and two probe calls), or None and the reason the model cannot share its calls."""
    if model.edits:
        return None, f"poly: {model.path.name} is edited (bent, weights or attributes set): it plays alone"
    key = (model._file_key, str(model.device), method, block)
    with _MAKING:       # objects loading at once make one group, not one each
        g = _GROUPS.get(key)
        if g is None:
            try:
                g = _GROUPS[key] = Group(key, model, method, block)
            except UnravelError as e:
                return None, f"poly: {e}: it plays alone"
    return g, ""


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
        loaded = model._loaded if model.shared else None
        written = None              # what running writes, when the shared load knows it
        if loaded is not None and loaded.template is None:
            self.cmod = loaded.module._c    # running changes nothing: the module itself
        elif loaded is not None:
            # the file's state (the export's caches, for 64 voices), the same weights and the
            # same compiled code as the private objects (not a second compilation: 40 MB on
            # a capacity-12 RAVE export)
            self.cmod = modelcache.copy_sharing_weights(loaded.template, loaded.params)
            written = loaded.state
        elif model.file_unchanged():    # the export's caches, whatever a private object's hold
            self.cmod = modelcache.read_module(model.path, model.device)._c
        else:
            with model.lock:
                self.cmod = modelcache.jit_copy(model._cmod)
        self.fn = self.cmod._get_method(method)
        self.items, self.capacity = self._per_voice(written)
        self.x = torch.zeros(self.capacity, self.in_chans, self.in_frames)
        self.cond = threading.Condition()
        self.members: list[Member] = []
        self.running = False
        self.rounds = 0

    def _per_voice(self, written: list[str] | None) -> tuple[list[str], int]:
        """The buffers that hold per-voice state (those that running the method changes; their
        first dimension is the batch index) and how many voices they hold. Refuses a module
        whose running changes anything else (a counter, a buffer of another shape).
        `written`: what the module's methods write, when known (else read from the graph)."""
        for name in modelcache.written(self.cmod, [self.method]) if written is None else written:
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
        last = max(self.members, key=lambda o: o.slot, default=None)
        if last is not None and last.slot > m.slot:
            for name in self.items:
                s = self._state(name)
                s[m.slot].copy_(s[last.slot])
            last.slot = m.slot
        m.slot = None
        m.status[0] = 0
        self._publish()

    def round(self, runners: list) -> list[int]:
        """One call for the blocks of `runners` (bridge.Runners of this group; each block in
        its runner's `x`, each output into its `out`): for each runner 0 when it played, 1
        when it plays alone from now on (its model changed, or the group is full; its `voice`
        is then None). Raises UnravelError when the call fails."""
        result = [1] * len(runners)
        for r in runners:           # a model's state is in one slot at a time
            m = r.voice
            if m is not None and m.slot is None and _HOME.get(m.model) not in (None, m):
                _HOME[m.model].leave()
        with self.cond:
            self._settle()
            for i, r in enumerate(runners):
                if r.voice is not None and r.voice.enter():
                    result[i] = 0
            batch = sorted((r for r, res in zip(runners, result) if res == 0),
                           key=lambda r: r.voice.slot)
            self.running = bool(batch)
        try:
            if batch:
                self._run(batch)
        finally:
            with self.cond:
                self.running = False
                self.rounds += bool(batch)
                self.cond.notify_all()      # who waits for no round to run (_settle)
        for r, res in zip(runners, result):
            if res:
                r.leave_group()
        return result

    def _run(self, batch: list) -> None:
        """The call for `batch` (runners sorted by slot; no other round runs)."""
        k, slots = len(batch), [r.voice.slot for r in batch]
        x = self.x[:k]
        for i, r in enumerate(batch):
            x[i].copy_(r.x[0])
        if not self.items or slots[-1] == k - 1:
            y = self._call(x)
        else:
            y = self._call_gathered(x, torch.tensor(slots))
        for i, r in enumerate(batch):
            r.take(y[i:i + 1])
            r.voices[:] = (len(self.members), k)


class Member:
    """One object's voice in a group; `status` (int32: the group's members, the items of its
    last call) is what C's `bang` replies."""

    def __init__(self, group: Group, model, status: np.ndarray):
        self.group, self.model, self.status = group, model, status
        self.slot: int | None = None

    def _valid(self) -> bool:
        g, m = self.group, self.model
        return m.edits == 0 and m.device == g.device and m._file_key == g.key[0]

    def enter(self) -> bool:
        """(group's cond held) Whether the member plays in this round: it joins at its first
        (its model's state into its slot), and leaves when its model changed (False)."""
        g = self.group
        if self.slot is None:
            return self._valid() and g._add(self)
        if not self._valid():
            g._remove(self)
            return False
        return True

    def leave(self) -> None:
        """Leave the group (its state back into its model); nothing if it is not in it."""
        g = self.group
        with g.cond:
            if self.slot is not None:
                g._remove(self)
