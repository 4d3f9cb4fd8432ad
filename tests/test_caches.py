"""unravel.caches: a streaming export's batch-sized buffers cut to the items an object uses
play bit for bit what the export's 64-item buffers play; a Pd object's Model keeps one item,
and a saved file the export's 64."""

from __future__ import annotations

import torch

from toymodels import make_test_model
from unravel import caches
from unravel.model import load_model


def _blocks(module, n: int, seed: int = 0) -> list[torch.Tensor]:
    """Five decode calls on batches of `n` items (the state goes on between them)."""
    g = torch.Generator().manual_seed(seed)
    return [module.decode(torch.randn(n, 8, 3, generator=g)) for _ in range(5)]


def test_fit_keeps_the_output_and_shrinks_the_buffers(tmp_path):
    p = make_test_model(tmp_path / "s.ts", streaming=True, streaming_encode=True)
    full, cut = torch.jit.load(str(p)), torch.jit.load(str(p))
    names = caches.batched(cut._c)
    assert names == ["codec.latent.cache", "enc_state.cache"]
    before = dict(cut.named_buffers())
    assert caches.items(cut._c) == 64
    nbytes = caches.fit(cut._c, 1)
    assert nbytes == sum(before[n][:1].numel() * 4 for n in names)
    assert caches.fit(cut._c, 1) == nbytes                      # again: nothing changes
    after = dict(cut.named_buffers())
    assert [after[n].shape[0] for n in names] == [1, 1] and caches.items(cut._c) == 1
    assert after["decode_params"] is before["decode_params"]     # other buffers untouched
    for a, b in zip(_blocks(full, 1), _blocks(cut, 1)):
        assert torch.equal(a, b)
    # grown again from the file's state: a batch of 4 plays what the 64-item module plays
    caches.fit(cut._c, 4, source=torch.jit.load(str(p))._c)
    ref = torch.jit.load(str(p))
    _blocks(ref, 1)
    for a, b in zip(_blocks(ref, 4, seed=1), _blocks(cut, 4, seed=1)):
        assert torch.equal(a, b)


def test_a_model_with_one_item_plays_and_saves_as_the_export(tmp_path):
    p = make_test_model(tmp_path / "s.ts", streaming=True)
    full = load_model(p)
    one, two = load_model(p, items=1), load_model(p, items=1)   # the first and a copy
    assert one.shared and two.shared
    for m in (one, two):
        assert [b.shape[0] for n, b in m.module.named_buffers() if n.endswith("cache")] == [1]
    z = torch.randn(1, 8, 3, generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        ref = full.run("decode", z)
        assert torch.equal(one.run("decode", z), ref) and torch.equal(two.run("decode", z), ref)
    saved = torch.jit.load(str(two.save(tmp_path / "two.ts")))
    assert caches.items(saved._c) == 64 and caches.items(two.module._c) == 1
    assert torch.equal(saved.codec.latent.cache[:1], two.module.codec.latent.cache)
    assert torch.equal(saved.codec.latent.cache[1:], torch.jit.load(str(p)).codec.latent.cache[1:])


class _ListCache(torch.nn.Module):
    """A cached convolution like RAVE's, whose forward gathers its outputs in a local list
    (as RAVE's exports do): appending to that list writes no attribute."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 1, 3)
        self.register_buffer("pad", torch.zeros(64, 1, 2))
        self.register_buffer("forward_params", torch.tensor([1, 1, 1, 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.pad[:x.shape[0]], x], -1)
        self.pad[:x.shape[0]].copy_(x[..., -2:])
        outs: list[torch.Tensor] = []
        outs.append(self.conv(x))
        return torch.cat(outs, 1)


def test_a_local_list_is_not_an_unknown_write(tmp_path):
    from unravel import modelcache
    p = tmp_path / "list.ts"
    torch.jit.save(torch.jit.script(_ListCache()), str(p))
    m = torch.jit.load(str(p))
    assert modelcache.written(m._c, ["forward"]) == {"pad"}
    assert caches.batched(m._c) == ["pad"]
    a, b = load_model(p, items=1), load_model(p, items=1)
    assert a.shared and b.shared and a.module.conv.weight.data_ptr() == b.module.conv.weight.data_ptr()
    assert a.module.pad.shape == (1, 1, 2)


class _Table(torch.nn.Module):
    """Two buffers of 64 rows: `cache` read as `cache[:batch]`, `table` as `table[:4]` (a
    fixed count: cutting it would change the output) and `whole` read whole."""

    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.zeros(64, 1, 2))
        self.register_buffer("table", torch.arange(64.0).view(64, 1, 1))
        self.register_buffer("whole", torch.ones(64, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.cache[:x.shape[0]].sum() + self.table[:4].sum() + self.whole.sum()
        self.cache[:x.size(0)].copy_(x[..., -2:])
        return y


def test_only_slices_by_the_batch_size_are_cut():
    m = torch.jit.script(_Table())
    assert caches.batched(m._c) == ["cache"]
    x = torch.randn(1, 1, 4)
    ref = torch.jit.script(_Table())(x)
    caches.fit(m._c, 1)
    assert [b.shape[0] for b in m.buffers()] == [1, 64, 64]
    assert torch.equal(m(x), ref)
