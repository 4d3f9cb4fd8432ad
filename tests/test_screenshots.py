"""The pictures in docs/ are of the current patches (issue 25): docs/screenshots.json records,
for each, the sha256 of the patch files it was made from (tools/screenshots.py writes it when
it remakes a picture); recomputed here from the committed patches, without a GUI run. A patch
changed without its picture fails, naming the command that remakes it."""

from __future__ import annotations

import re
import sys

from pdrun import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import screenshots  # noqa: E402

DOCS = ROOT / "docs"
NOT_A_PATCH = {"app.png"}          # the web page: tests/test_app_browser.py takes it


def test_every_picture_of_a_patch_is_recorded():
    pictures = {p.name for p in DOCS.glob("*.png")} - NOT_A_PATCH
    assert pictures == {f"{n}.png" for n in screenshots.SHOTS}
    assert set(screenshots.recorded()) == pictures


def test_every_picture_is_of_the_current_patches():
    record = screenshots.recorded()
    stale = [name for name in screenshots.SHOTS
             if record.get(f"{name}.png", {}).get("sha256") != screenshots.fingerprint(name)]
    assert not stale, (f"docs/{', docs/'.join(p + '.png' for p in stale)}: older than "
                       f"{', '.join(sorted({f for n in stale for f in record.get(n + '.png', {}).get('from', [])}))}; "
                       f"remake: .venv/bin/python tools/screenshots.py {' '.join(stale)}")


def test_the_record_names_the_patches_it_hashes():
    for name, shot in screenshots.SHOTS.items():
        assert screenshots.recorded()[f"{name}.png"]["from"] == [f"pd/{p}" for p in shot.patches]


def test_the_readme_shows_pictures_that_are_there():
    shown = set(re.findall(r"\]\(docs/([\w.-]+\.png)\)", (ROOT / "README.md").read_text()))
    assert shown == {p.name for p in DOCS.glob("*.png")}


def test_a_changed_patch_makes_its_picture_stale(tmp_path, monkeypatch):
    """The control: the same fingerprint from a copy of pd/, another after one byte changes."""
    import shutil
    before = screenshots.fingerprint("bender")
    pd = tmp_path / "pd"
    shutil.copytree(ROOT / "pd", pd)
    monkeypatch.setattr(screenshots, "PD_DIR", pd)
    assert screenshots.fingerprint("bender") == before
    (pd / "bender.pd").write_text((pd / "bender.pd").read_text().replace("Init", "Init "))
    assert screenshots.fingerprint("bender") != before
