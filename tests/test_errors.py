"""unravel.errors: what reaches the user of an unexpected exception is one line of ours (no
class names, tensor reprs or allocator internals)."""

from __future__ import annotations

import pytest

from unravel.errors import UnravelError, one_line, short_cause


@one_line()
def _raise(_session, name: str, e: Exception):
    raise e


@pytest.mark.parametrize("exc,line", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 17179869184 bytes. Error code 12"),
     "diffuse: out of memory"),
    (MemoryError(), "diffuse: out of memory"),
    (RuntimeError("The size of tensor a (3) must match the size of tensor b (4)\n"
                  "[ torch.FloatTensor{64} ]"),
     "diffuse: The size of tensor a (3) must match the size of tensor b (4)"),
    (RuntimeError("builtins.ValueError: bad value"), "diffuse: bad value"),
])
def test_unexpected_exceptions_become_our_line(exc, line):
    with pytest.raises(UnravelError) as e:
        _raise(None, "diffuse", exc)
    assert str(e.value) == line


def test_short_cause_skips_tensor_reprs():
    assert short_cause(RuntimeError("shapes differ\n[ torch.LongTensor{2,3} ]")) == "shapes differ"
    assert short_cause(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == "out of memory"


def test_the_cli_says_out_of_memory_in_one_line(monkeypatch, capsys):
    """An allocation that fails although the estimate let it through: one line, status 2."""
    from unravel import cli

    def fail(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 17179869184 bytes.")
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), fail))
    assert cli.main(["tempo", "--bpm", "120"]) == 2
    assert capsys.readouterr().err == "unravel tempo: out of memory\n"


def _with_func(parser, fn):
    parser.set_defaults(func=fn)
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=fn)
    return parser
