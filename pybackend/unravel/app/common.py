"""What the tabs of the page share: the models on offer (Library), seeds, page fields,
command lines and the page helpers (error wrapper, theme, buttons)."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from unravel import limits, safewrite
from unravel.errors import UnravelError

DATA = Path(__file__).resolve().parents[1] / "data"
BUNDLED_LOOP = DATA / "loop.wav"
CHECKPOINT_SUFFIXES = (".pt", ".ckpt", ".pth")

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, desc: str) -> None:
    pass


# ---------------------------------------------------------------- models on offer

class Library:
    """The models the page offers (bundled ones plus a models folder), loaded once each.

    Decoding models are shared by the Diffusion and UnRAVEl tabs; the Bending tab bends its
    own copy of a model, so bending never changes what the other tabs hear.
    """

    def __init__(self, folder: str | os.PathLike | None = None, device: str = "cpu"):
        self.folder = Path(folder) if folder else None
        self.device = device  # where its models and the diffusion network run (unravel.device)
        self._lock = threading.Lock()
        self._models: dict[str, object] = {}
        self._benders: dict[str, tuple] = {}

    def _files(self, suffixes: Sequence[str]) -> list[Path]:
        if not self.folder or not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.rglob("*")
                      if p.is_file() and p.suffix.lower() in suffixes)

    def rave_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs: the bundled RAVE models by name, then `*.ts` in the folder."""
        from unravel.model import BUNDLED
        bundled = [(f"{name} (bundled)", name) for name, p in BUNDLED.items() if p.is_file()]
        return bundled + [(self._label(p), str(p)) for p in self._files((".ts",))]

    def diffusion_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs: the bundled checkpoint as `default`, then checkpoints in the folder."""
        return [("default (bundled)", "default")] + [
            (self._label(p), str(p)) for p in self._files(CHECKPOINT_SUFFIXES)]

    def _label(self, path: Path) -> str:
        return str(path.relative_to(self.folder)) if self.folder else path.name

    def model(self, spec: str):
        """The shared, unbent model for `spec` (loaded on first use)."""
        from unravel.model import load_model
        key = self.key(spec)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(key, device=self.device)
            return self._models[key]

    def bender(self, spec: str):
        """(model, Bender) of this page's private copy of the model `spec`, for bending."""
        from unravel.bend import Bender
        from unravel.model import load_model
        key = self.key(spec)
        with self._lock:
            if key not in self._benders:
                model = load_model(key, device=self.device)
                self._benders[key] = (model, Bender(model))
            return self._benders[key]

    def key(self, spec: str) -> str:
        """The resolved path of a RAVE model the page may load: a bundled one by name, or a
        `.ts` file inside the models folder (its path, or its name there, `.ts` optional).
        Any other path is refused with the same message whether or not it exists, so the
        page tells nothing about the files of the machine it runs on."""
        from unravel.model import BUNDLED, resolve_model
        if str(spec) in BUNDLED:
            return str(resolve_model(str(spec)))
        found = self._inside(spec, (".ts",))
        if found is None:
            raise UnravelError(f"model {str(spec)!r}: not found among the bundled models and "
                               f"the .ts files of the models folder")
        return str(found)

    def checkpoint(self, spec: str) -> str:
        """'default' (the bundled checkpoint) or the resolved path of a checkpoint inside the
        models folder; anything else is refused as key() refuses models."""
        if str(spec) == "default":
            return "default"
        found = self._inside(spec, CHECKPOINT_SUFFIXES)
        if found is None:
            raise UnravelError(f"diffusion model {str(spec)!r}: not found among the bundled "
                               f"checkpoint and the checkpoints of the models folder")
        return str(found)

    def _inside(self, spec: str, suffixes: Sequence[str]) -> Path | None:
        """The file `spec` names inside the models folder (symbolic links resolved), else None."""
        if not self.folder or not str(spec) or "\0" in str(spec):
            return None
        root = self.folder.resolve()
        given = Path(str(spec)).expanduser()
        given = given if given.is_absolute() else root / given
        for candidate in (given, given.with_name(given.name + suffixes[0])):
            try:
                path = candidate.resolve()
                if (path.is_relative_to(root) and path.suffix.lower() in suffixes
                        and path.is_file()):
                    return path
            except (OSError, RuntimeError, ValueError):
                continue
        return None


def random_seed() -> int:
    """A fresh seed for the Randomize buttons (the seed itself is shown, so results repeat)."""
    return secrets.randbelow(limits.MAX_PAGE_SEED) + 1


def fresh_dir(parent: str | os.PathLike, stem: str) -> Path:
    """A new empty folder `<parent>/<stem>-NNN` (the first free number)."""
    parent = safewrite.check_writable_dir(parent)
    i = 1
    while True:
        d = parent / f"{stem}-{i:03d}"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            i += 1


def whole(value, label: str) -> int:
    """An integer from a page field (UnravelError naming the field when it is empty or not whole)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UnravelError(f"{label}: give a whole number") from None
    if not np.isfinite(f) or f != int(f):
        raise UnravelError(f"{label}: give a whole number, not {value}")
    return int(f)




# ---------------------------------------------------------------- the page

def _on_page(fn: Callable) -> Callable:
    """Wrap a page handler so every failure becomes a message on the page, never a dead page."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UnravelError as e:
            raise gr.Error(str(e), duration=None, print_exception=False) from None
        except Exception as e:  # a bug or a model that fails: say so, keep the page alive
            raise gr.Error(f"{type(e).__name__}: {e}", duration=None) from None
    return handler


def _reporter(progress) -> Progress:
    return lambda fraction, desc: progress(fraction, desc=desc)


CSS = ".seed-button { align-self: flex-end; margin-bottom: 6px; }"


def theme():
    """A gradio theme with system fonts only (the default one fetches Google fonts)."""
    import gradio as gr
    return gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def randomize_button():
    """The small Randomize button next to a seed field."""
    import gradio as gr
    return gr.Button("Randomize", size="sm", scale=0, min_width=110, elem_classes="seed-button")
