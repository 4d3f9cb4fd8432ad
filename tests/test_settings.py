"""One declaration per operation (unravel.operations): the command line and the Pd jobs take
the same options with the same bounds, and what the CLI parses, a Pd job parses and a
printed command line gives back are the same settings."""

from __future__ import annotations

import argparse
import math
import shlex

import numpy as np
import pytest
import soundfile as sf

from pdrun import BUILD, jobs_patch, run_pd
from unravel import cli, generator, pipeline
from unravel.errors import UnravelError
from unravel.operations import DIFFUSE, GENERATE, PD_JOBS, SPECS
from unravel.model import DEFAULT_MODEL, load_model

# the command-line options a Pd job has no key for, and why
CLI_ONLY = {"model": "the object's model", "sr": "the object's model", "ratio": "the object's model",
            "json": "a job replies its data, it prints nothing",
            "table": "a tempo job replies one row, it prints no table"}
SHARED = {"help", "threads", "device"}   # every command's, not an operation's


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("spec", PD_JOBS, ids=lambda s: s.name)
def test_every_cli_option_of_a_job_is_a_pd_option_with_the_same_bounds(spec):
    """Walks the real `unravel <job>` parser: each of its options is a key of the Pd job
    (but CLI_ONLY), and the CLI and the Pd job accept and refuse the same values at both
    ends of each bound."""
    pd_keys = {o.key: o for o in spec.on("pd")}
    actions = [a for a in _subparser(spec.command or spec.name)._actions if a.dest not in SHARED]
    assert actions
    for action in actions:
        o = spec.option(action.dest)
        if action.dest in CLI_ONLY:
            assert o.where == "cli", action.dest
            continue
        assert o.key in pd_keys, f"{spec.name}: --{action.dest} has no Pd key"
        if o.kind == "choice":
            assert tuple(action.choices) == o.choices
            with pytest.raises(UnravelError, match="one of"):
                spec.from_pd([o.key, "nonsense"])
        if o.kind not in ("int", "float"):
            continue
        for edge, inside in ((o.low, 1), (o.high, -1)):
            if edge is None or math.isinf(edge):
                continue
            step = 1 if o.kind == "int" else max(abs(edge) * 1e-3, 1e-3)
            outside = edge - inside * step
            ok = edge + (inside * step if o.open_low and edge == o.low else 0)
            text = str(int(ok)) if o.kind == "int" else repr(float(ok))
            assert action.type(text) == getattr(spec.from_pd([o.key, float(ok)]), o.attr)
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(str(int(outside)) if o.kind == "int" else repr(float(outside)))
            with pytest.raises(UnravelError, match=o.key):
                spec.from_pd([o.key, float(outside)])


def test_every_spec_builds_its_command():
    """The parser of each command has exactly the options its spec declares for the CLI."""
    for spec in SPECS:
        names = {a.dest for a in _subparser(spec.command or spec.name)._actions} - SHARED
        assert names == {o.attr for o in spec.on("cli")}, spec.name


def test_a_printed_command_line_gives_the_same_settings(tmp_path):
    s = DIFFUSE.settings(checkpoint="ck.pt", seed=7, steps=12, temperature=0.8, latent_scale=1.5,
                         length_mult=2, latent_length=64, save_latents=True, name="x y",
                         output=tmp_path / "out dir", sampler="dpm")
    line = DIFFUSE.command_line(s)
    assert line.startswith("unravel diffuse -c ck.pt ") and "--seed 7" in line and "'x y'" in line
    back = DIFFUSE.from_cli(cli.build_parser().parse_args(shlex.split(line)[1:]))
    assert back.as_dict() == s.as_dict()
    # and a Pd job with the same keys
    pd = DIFFUSE.from_pd(["checkpoint", "ck.pt", "seed", 7.0, "steps", 12.0, "temperature", 0.8,
                          "latent-scale", 1.5, "length_mult", 2.0, "latent-length", 64.0,
                          "save-latents", 1.0, "name", "x y", "output", str(tmp_path / "out dir"),
                          "sampler", "dpm"])
    assert {k: v for k, v in pd.as_dict().items() if k != "temperature"} == \
        {k: v for k, v in s.as_dict().items() if k != "temperature"}
    assert pd.temperature == pytest.approx(0.8)


def test_settings_refuse_what_the_parser_refuses():
    with pytest.raises(UnravelError, match="give latent-scale or skip-normalize, not both"):
        DIFFUSE.settings(latent_scale=2.0, skip_normalize=True)
    with pytest.raises(UnravelError, match="no option 'bogus'"):
        DIFFUSE.settings(bogus=1)
    with pytest.raises(UnravelError, match="steps must be an integer"):
        DIFFUSE.settings(steps=2.5)
    assert GENERATE.settings().seed == 0 and GENERATE.settings().points is None


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
def test_options_new_to_pd_work_through_a_real_object(tmp_path):
    """Options the Pd jobs lacked before they shared the CLI's declaration: generate's skip,
    stats' plot, encode's extensions and jobs, tempo's k; the files equal the backend's."""
    audio, sr = sf.read(pipeline.__file__.replace("pipeline.py", "data/loop.wav"), dtype="float32")
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "loop.wav", audio[: sr * 2], sr, subtype="FLOAT")
    sf.write(tmp_path / "in" / "skip.flac", audio[: sr], sr)
    jobs = ["encode input in output lat extensions .wav jobs 2",
            "generate input lat/loop.npy output gen seed 3 points 11 skip 1",
            "stats input lat/loop.npy output st.json plot st.png",
            "tempo k 16"]
    r = run_pd(jobs_patch(tmp_path / "opts.pd", jobs), timeout=120)
    assert r.returncode == 0 and r.errors == [], r.errors
    replies = [rep.split() for rep in r.after("reply:")]
    assert [rep[:2] for rep in replies] == [["done", j.split()[0]] for j in jobs], replies
    assert replies[0][2:] == [str(tmp_path / "lat" / "loop.npy")]     # the .flac left out
    m = load_model(DEFAULT_MODEL)
    ref = generator.generate_files(GENERATE.settings(inputs=[tmp_path / "lat" / "loop.npy"], output=tmp_path / "ref", seed=3, points=11, files=2, sr=m.sr, ratio=m.ratio))
    assert np.array_equal(np.load(replies[1][2]), np.load(ref[1]))   # file 2 of the stream
    assert replies[2][2:] == [str(tmp_path / "st.json"), str(tmp_path / "st.png")]
    assert (tmp_path / "st.png").read_bytes()[:4] == b"\x89PNG"
    assert float(replies[3][2]) == 16
