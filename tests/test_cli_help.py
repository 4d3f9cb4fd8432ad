"""Issue 25: a command line you can learn from --help. The real parser (cli.build_parser) is
walked: every command's --help ends with examples that the same parser accepts, every
option has a description, and the bundled loop has a name (`loop`) in the commands that
read audio."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

import numpy as np
import pytest

from unravel import audio
from unravel.cli import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = _commands()


def _example_lines(parser: argparse.ArgumentParser) -> list[str]:
    """The `unravel ...` lines of a command's epilog (other lines: how to make the inputs)."""
    text = parser.epilog or ""
    assert text.startswith("examples:\n"), text
    return [ln.split("#")[0].strip() for ln in text.splitlines()[1:]]


def test_every_command_is_walked():
    assert {"info", "encode", "stats", "generate", "tempo", "decode", "bend", "diffuse",
            "prepare-diffusion", "train-diffusion", "app", "pd-install"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_a_description(name):
    empty = [a.option_strings or [a.dest] for a in COMMANDS[name]._actions
             if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert empty == [], f"unravel {name}: options without help: {empty}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_examples_the_parser_accepts(name):
    lines = [ln for ln in _example_lines(COMMANDS[name]) if ln.startswith("unravel ")]
    assert lines, f"unravel {name}: no example in --help"
    for ln in lines:
        argv = shlex.split(ln)[1:]
        assert argv[0] == name, ln
        ns = build_parser().parse_args(argv)      # a usage error exits here
        assert ns.func is not None


def test_help_prints_the_examples_as_written():
    out = subprocess.run([sys.executable, "-m", "unravel.cli", "encode", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "examples:\n  unravel encode -m default loop -o latents/ --latent-wav\n" in out


def test_threads_only_where_it_means_something():
    for name in ("tempo", "pd-install"):
        flags = {f for a in COMMANDS[name]._actions for f in a.option_strings}
        assert "--threads" not in flags, name


def test_loop_names_the_bundled_loop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [(path, name)] = audio.scan_audio(["loop"])
    assert path == audio.BUNDLED_LOOP and name == "loop" and path.is_file()
    x, sr = audio.read(path)
    assert sr == 44100 and x.shape == (1, 8 * 44100)
    # a file or folder named loop here wins
    (tmp_path / "loop").mkdir()
    import soundfile as sf
    sf.write(tmp_path / "loop" / "mine.wav", np.zeros(100, np.float32), 44100)
    assert [n for _, n in audio.scan_audio(["loop"])] == ["mine"]


def test_encode_reads_the_bundled_loop(tmp_path):
    """`unravel encode -m default loop` through the real command: the same latents as the
    bundled file given by its path."""
    from unravel.cli import main
    assert main(["encode", "-m", "default", "loop", "-o", str(tmp_path / "a")]) == 0
    assert main(["encode", "-m", "default", str(audio.BUNDLED_LOOP), "-o", str(tmp_path / "b")]) == 0
    z = np.load(tmp_path / "a" / "loop.npy")
    assert z.shape == (1, 8, (8 * 44100) // 2048)
    np.testing.assert_array_equal(z, np.load(tmp_path / "b" / "loop.npy"))
