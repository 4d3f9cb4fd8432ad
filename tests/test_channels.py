"""Channel ops (issue 23 part 1): ablate, scale, invert and permute a layer's output
channels, exact rewrites of its rows (a transposed convolution's columns), chosen as a list,
a seeded share or all; restore gives the original back bit for bit. Through the backend,
`unravel channels` and a real [unravel~]."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from pdrun import BUILD, messages_patch, run_pd
from unravel import cli
from unravel.audio import BUNDLED_LOOP
from unravel.bend import Bender, channel_axis
from unravel.errors import UnravelError
from unravel.model import load_model

CONV = "encoder.net.2.weight"          # Conv1d (96, 64, 8): output channels on axis 0
TRANSPOSED = "decoder.net.6.weight"    # ConvTranspose1d (128, 96, 8): output channels on axis 1


def layer(bender: Bender, name: str) -> np.ndarray:
    return bender.get_weights(name).reshape(dict(bender.model.module.named_parameters())[name].shape)


def test_output_channel_axis_follows_the_layer_class():
    m = load_model("default", warmup=False)
    params = dict(m.module.named_parameters())
    assert channel_axis(m.module, CONV, params[CONV]) == 0
    assert channel_axis(m.module, TRANSPOSED, params[TRANSPOSED]) == 1
    assert channel_axis(m.module, "decoder.net.6.bias", params["decoder.net.6.bias"]) == 0


@pytest.mark.parametrize("name,axis", [(CONV, 0), (TRANSPOSED, 1)])
def test_channel_ops_rewrite_exactly_the_chosen_channels(name, axis):
    bender = Bender(load_model("default", warmup=False))
    orig = layer(bender, name)
    n = orig.shape[axis]
    take = lambda w, c: np.take(w, c, axis=axis)   # noqa: E731 - one row (or column) set

    assert bender.channels(name, "scale", 1.5, channels=[0, 2]) == 2
    w = layer(bender, name)
    assert np.array_equal(take(w, [0, 2]), take(orig, [0, 2]) * np.float32(1.5))
    rest = [c for c in range(n) if c not in (0, 2)]
    assert np.array_equal(take(w, rest), take(orig, rest))

    assert bender.channels(name, "invert") == n                        # all; replaces the scale
    assert np.array_equal(layer(bender, name), -orig)

    k = bender.channels(name, "ablate", percent=25, seed=3)
    w = layer(bender, name)
    zero = [c for c in range(n) if not take(w, [c]).any()]
    assert k == len(zero) == n // 4
    assert bender.channels(name, "ablate", percent=25, seed=3) == k and np.array_equal(layer(bender, name), w)
    assert bender.channels(name, "ablate", percent=25, seed=4) == k and not np.array_equal(layer(bender, name), w)

    bender.channels(name, "permute", percent=50, seed=1)
    w = layer(bender, name)
    moved = [c for c in range(n) if not np.array_equal(take(w, [c]), take(orig, [c]))]
    assert moved and len(moved) <= n // 2
    rows = sorted(take(w, [c]).tobytes() for c in moved)
    assert rows == sorted(take(orig, [c]).tobytes() for c in moved)   # the same rows, swapped

    bender.restore(name)
    assert np.array_equal(layer(bender, name), orig)


def test_channel_errors_are_one_line():
    bender = Bender(load_model("default", warmup=False))
    with pytest.raises(UnravelError, match="has 96 output channels, got channel 96"):
        bender.channels(CONV, "scale", 2.0, channels=[1, 96])
    with pytest.raises(UnravelError, match="permute needs 2 channels"):
        bender.channels(CONV, "permute", channels=[3])
    with pytest.raises(UnravelError, match="unknown op"):
        bender.channels(CONV, "twist")


def test_cli_channels(tmp_path, capsys):
    out = tmp_path / "c.ts"
    assert cli.main(["channels", "-m", "default", "--layer", TRANSPOSED, "--op", "scale",
                     "--amount", "2", "--channels", "0", "5", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out) and f"channels {TRANSPOSED} scale: 2 channels" in printed.err
    orig = layer(Bender(load_model("default", warmup=False)), TRANSPOSED)
    saved = dict(torch.jit.load(str(out)).named_parameters())[TRANSPOSED].detach().numpy()
    expect = orig.copy()
    expect[:, [0, 5]] *= np.float32(2)
    assert np.array_equal(saved, expect)
    assert cli.main(["channels", "-m", "default", "--layer", CONV, "--op", "ablate",
                     "--channels", "1", "--percent", "10", "-o", str(tmp_path / "d.ts")]) == 2


@pytest.mark.skipif(not (BUILD / "unravel~.pd_linux").exists(), reason="the external is not built")
def test_pd_channels(tmp_path):
    box = (f"channels {CONV} scale 0.5, channels {CONV} scale 2 list 0 3, save c.ts, "
                f"channels {CONV} scale 2 list 96, channels {CONV} ablate 50 3")
    r = run_pd(messages_patch(tmp_path / "ch.pd", "unravel~ default forward", box), timeout=120)
    assert r.returncode == 0
    assert r.after("reply:") == [f"channels {CONV} scale 96", f"channels {CONV} scale 2",
                                 f"saved {tmp_path / 'c.ts'}", f"channels {CONV} ablate 48"]
    assert r.errors == [f"error: [unravel~]: channels: layer '{CONV}' has 96 output channels, "
                        "got channel 96"], r.errors
    orig = layer(Bender(load_model("default", warmup=False)), CONV)
    saved = dict(torch.jit.load(str(tmp_path / "c.ts")).named_parameters())[CONV].detach().numpy()
    expect = orig.copy()
    expect[[0, 3]] *= np.float32(2)
    assert np.array_equal(saved, expect)


def test_ablate_and_scale_act_on_the_layers_output_channels():
    """The layer's own submodule (encoder.net.2, a Conv1d with a bias) on the input it gets
    from the bundled loop: after `ablate list 5` its output channel 5 is exactly 0, after
    `scale 2` exactly twice the original, every other channel untouched; restore of the
    weight gives the original output bit for bit (its bias follows the weight)."""
    loop, _ = sf.read(BUNDLED_LOOP, dtype="float32", frames=16384)
    bender = Bender(load_model("default", warmup=False))
    m = bender.model.module
    with torch.no_grad():
        x = m.pqmf.analysis(torch.from_numpy(loop)[None, None])
        for k in ("0", "1"):
            x = getattr(m.encoder.net, k)(x)                  # the recorded input of net.2
        conv = lambda: getattr(m.encoder.net, "2")(x)[0]      # noqa: E731 - net.2 as it is now
        orig = conv().clone()
        assert orig[5].abs().min() > 0
        bender.channels(CONV, "ablate", channels=[5])
        y = conv()
        assert torch.equal(y[5], torch.zeros_like(y[5]))
        assert torch.equal(y[[c for c in range(96) if c != 5]], orig[[c for c in range(96) if c != 5]])
        bender.channels(CONV, "scale", 2.0, channels=[5])
        assert torch.equal(conv()[5], orig[5] * 2)
        bender.restore(CONV)
        assert torch.equal(conv(), orig)
