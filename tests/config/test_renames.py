"""axis.config.rename_agency and the directory journal on disk (axis.config.directory_journal)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from axis.config import ConfigError, generate_workdir, load_config
from axis.config.directory_journal import journal_path, read_journal, sync_journal
from axis.config.renames import rename_agency
from axis.core.directory_versions import changes_since

G01, G03, H05 = "000.00.00.G01", "000.00.00.G03", "000.00.00.H05"
NEW = "G01.9"


def workdir(tmp_path: Path) -> Path:
    path, _ = generate_workdir(tmp_path, [(G01, "A", "d1"), (G03, "B", "sh")], [("d1", "dedicated"),
                                                                                  ("sh", "shared")], tls=False)
    return path


def test_rename_keeps_the_old_code_as_an_alias(tmp_path: Path) -> None:
    path = workdir(tmp_path)
    before = load_config(path)
    v1 = sync_journal(before)
    assert v1.version == 1 and journal_path(before) == tmp_path / "directory-journal.json"
    cfg = rename_agency(path, G01, NEW, name="A renamed")
    assert cfg == load_config(path)
    a = cfg.agency(NEW)
    assert a is not None and a.aliases == (G01,) and a.name == "A renamed" and a.server == "d1"
    assert a.token_sha256 == before.agency(G01).token_sha256  # type: ignore[union-attr]  # same credentials
    assert cfg.server("d1").keys == (NEW,)
    assert cfg.directory.resolve(G01) is cfg.directory.agency(NEW)
    stored = read_journal(tmp_path / "directory-journal.json")  # advanced by the rename
    assert stored.version == 2
    assert changes_since(stored, 1) == {"version": 2, "deleted": [G01], "full": False, "agencies": [
        {"code": NEW, "name": "A renamed", "kind": "dedicated", "active": True, "aliases": [G01]}]}
    # again: the former codes follow
    cfg = rename_agency(path, NEW, "G01.10")
    assert cfg.agency("G01.10").aliases == (G01, NEW)  # type: ignore[union-attr]
    # back to a former code: it leaves the aliases
    cfg = rename_agency(path, "G01.10", G01)
    assert cfg.agency(G01).aliases == (NEW, "G01.10")  # type: ignore[union-attr]
    assert sync_journal(cfg).version == 4


def test_rename_refusals_leave_the_file(tmp_path: Path) -> None:
    path = workdir(tmp_path)
    original = path.read_bytes()
    for old, new, match in ((G01, G03, "already agency"), (G01, "bad code", "not an agency code"),
                            (H05, NEW, "not in the agencies"), (G01, G01, "already has")):
        with pytest.raises(ConfigError, match=match):
            rename_agency(path, old, new)
    rename_agency(path, G01, NEW)
    with pytest.raises(ConfigError, match="already agency"):  # an alias is taken too
        rename_agency(path, G03, G01)
    assert path.read_bytes() != original


def test_hand_edits_are_versioned_at_the_next_sync(tmp_path: Path) -> None:
    path = workdir(tmp_path)
    assert sync_journal(load_config(path)).version == 1
    raw = yaml.safe_load(path.read_text())
    raw["agencies"][1]["active"] = False
    path.write_text(yaml.safe_dump(raw))
    j = sync_journal(load_config(path))
    assert j.version == 2 and changes_since(j, 1)["agencies"][0] == {
        "code": G03, "name": "B", "kind": "shared", "active": False, "aliases": []}


def test_concurrent_syncs_agree_on_one_version(tmp_path: Path) -> None:
    path = workdir(tmp_path)
    sync_journal(load_config(path))
    rename_agency(path, G01, NEW)  # version 2
    raw = yaml.safe_load(path.read_text())
    raw["agencies"][1]["name"] = "B2"
    path.write_text(yaml.safe_dump(raw))
    configs = [load_config(path) for _ in range(8)]
    versions: list[int] = []
    threads = [threading.Thread(target=lambda c=c: versions.append(sync_journal(c).version)) for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert versions == [3] * 8


def test_aliases_and_active_in_the_configuration(tmp_path: Path) -> None:
    path = workdir(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["agencies"][0]["aliases"] = [G03]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="is the code of"):
        load_config(path)
    raw["agencies"][0]["aliases"] = [H05]
    raw["agencies"][0]["active"] = "maybe"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="true or false"):
        load_config(path)
    raw["agencies"][0]["active"] = "no"
    path.write_text(yaml.safe_dump(raw))
    a = load_config(path).directory.agency(G01)
    assert a is not None and a.aliases == (H05,) and a.active is False


def test_a_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = workdir(tmp_path)
    (tmp_path / "directory-journal.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"directory-journal\.json: a malformed directory journal"):
        sync_journal(load_config(path))
