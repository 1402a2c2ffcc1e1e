"""The docs name only what exists: every module, function, class or file the README, ``docs/``, ``bench/README.md``
and the docstrings of ``axis``, ``endpoints`` and ``bench`` point at can be found.

A reference is checked when it is unambiguous:

- a dotted name in backticks or in a Sphinx role (``axis.core.verify.Verifier``, :func:`axis.core.schema.validate`)
  imports and resolves attribute by attribute — a dataclass field or an annotated attribute counts. RabbitMQ's
  names (``axis.submit``, ``axis.dead``: the values of :mod:`axis.core.wire`'s ``EX_`` and ``Q_`` constants) and the
  package's entry-point groups (``axis.endpoints``) are names of their own, not modules;
- a short Sphinx role inside a module (:func:`check_signer`, :meth:`close`) resolves in that module: a global, an
  attribute of one of its globals (``Class.method``) or, alone, a method or field of a class it defines;
- a path in backticks (``axis/core/verify.py``, ``docs/core.md``) exists in the repository;
- a command line in the Markdown docs and in the public contract — ``axis <command> … --option`` and
  ``python bench/<script>.py … --option`` — names a command that exists and options that command takes.

When it was written it found 23 references to where files and names were before the restructuring, and a
benchmark (``bench/endpoint_submit.py``) that no longer imported.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from axis.core import wire
from tests.conftest import SAMPLES

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
SOURCES = sorted(p for pattern in ("axis/**/*.py", "endpoints/**/*.py", "bench/*.py") for p in ROOT.glob(pattern))

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
DOTTED = re.compile(rf"`~?((?:axis|endpoints|bench)(?:\.{_NAME})+)(?:\(\))?`")
ROLE = re.compile(rf":(?:func|class|meth|mod|data|attr|exc|obj):`~?({_NAME}(?:\.{_NAME})*)(?:\(\))?`")
PATH = re.compile(r"`((?:axis|endpoints|bench|scripts|tests|schemas|docs|certs|scenarios)/[A-Za-z0-9_./-]*)`")


def _not_modules() -> set[str]:
    """Dotted names that are not Python: the broker's exchanges and queues, the entry-point groups."""
    broker = {v for k, v in vars(wire).items() if k.startswith(("EX_", "Q_")) and isinstance(v, str)}
    groups = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("entry-points", {}))
    return broker | groups | {"axis.server"}  # axis.server.<id>: a server's queue


NOT_MODULES = _not_modules()


def _has(obj: Any, name: str) -> bool:
    if hasattr(obj, name):
        return True
    return isinstance(obj, type) and any(name in getattr(k, "__annotations__", {}) for k in obj.__mro__)


def _walk(obj: Any, names: list[str]) -> bool:
    for name in names:
        if not _has(obj, name):
            return False
        if not hasattr(obj, name):  # an annotated field: nothing further to look into
            return name == names[-1]
        obj = getattr(obj, name)
    return True


def resolves(dotted: str) -> bool:
    """The longest importable prefix of ``dotted``, then the rest as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        return _walk(module, parts[i:])
    return False


def resolves_in(module: ModuleType, ref: str) -> bool:
    """A short reference inside ``module``: see the module docstring."""
    parts = ref.split(".")
    if _walk(module, parts):
        return True
    if len(parts) == 1:
        own = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
        if any(_has(cls, ref) for cls in own):
            return True
    try:  # a standard or third-party name (:func:`asyncio.to_thread`, :class:`ssl.SSLContext`)
        return resolves(ref) if parts[0] not in ("axis", "endpoints", "bench") else False
    except ImportError:
        return False


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _missing_paths(text: str) -> list[str]:
    return sorted({p for p in PATH.findall(text) if not (ROOT / p.rstrip("/.")).exists()})


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_docs_name_what_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    names = {n for n in DOTTED.findall(text) + ROLE.findall(text) if n not in NOT_MODULES and "." in n}
    assert sorted(n for n in names if not resolves(n)) == [], f"{_rel(doc)} names what does not exist"
    assert _missing_paths(text) == [], f"{_rel(doc)} names files that do not exist"


def test_docstrings_name_what_exists() -> None:
    wrong: list[str] = []
    for source in SOURCES:
        if source.name == "__main__.py":  # importing it runs the command line
            continue
        text = source.read_text(encoding="utf-8")
        module = importlib.import_module(_module_of(source))
        for ref in sorted(set(ROLE.findall(text)) | set(DOTTED.findall(text))):
            if ref in NOT_MODULES:
                continue
            full = ref.startswith(("axis.", "endpoints.", "bench."))
            if not (resolves(ref) if full else resolves_in(module, ref)):
                wrong.append(f"{_rel(source)}: {ref}")
        wrong += [f"{_rel(source)}: {p}" for p in _missing_paths(text)]
    assert wrong == []


AXIS_COMMAND = re.compile(r"(?:^|[`$ ])axis ([a-z][a-z-]*(?: [a-z][a-z-]*)*)([^`\n|#]*)")
BENCH_COMMAND = re.compile(r"python bench/([a-z_]+)\.py([^`|)\n#]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _cli_options() -> dict[tuple[str, ...], set[str]]:
    """Every ``axis`` command (as its words) → the options it takes, from the click tree typer builds."""
    import typer.main

    from axis.cli import build_app

    commands: dict[tuple[str, ...], set[str]] = {}

    def walk(command: Any, words: tuple[str, ...]) -> None:
        commands[words] = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*words, name))

    walk(typer.main.get_command(build_app()), ())
    return commands


def wrong_command_lines(text: str, commands: dict[tuple[str, ...], set[str]]) -> list[str]:
    """The ``axis …`` and ``python bench/….py`` command lines of ``text`` naming options their command lacks (or,
    for the benchmarks, a script that does not exist)."""
    wrong: list[str] = []
    for match in AXIS_COMMAND.finditer(text):
        words: tuple[str, ...] = ()
        for word in match.group(1).split():
            if (*words, word) not in commands:
                break
            words = (*words, word)
        if words:  # prose that says "axis" before a word that is no command is not a command line
            wrong += [f"axis {' '.join(words)} {o}" for o in OPTION.findall(match.group(2)) if o not in commands[words]]
    for name, rest in BENCH_COMMAND.findall(text):
        script = ROOT / "bench" / f"{name}.py"
        if not script.exists():
            wrong.append(f"bench/{name}.py")
            continue
        source = script.read_text(encoding="utf-8")  # argparse: the option's string is in the script
        wrong += [f"bench/{name}.py {o}" for o in OPTION.findall(rest) if f'"{o}"' not in source and o != "--help"]
    return sorted(set(wrong))


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_command_lines_in_the_docs_work(doc: Path) -> None:
    assert wrong_command_lines(doc.read_text(encoding="utf-8"), _cli_options()) == []


def test_the_contracts_command_lines_work() -> None:
    """The public contract (``../shared/reference/contract.md``, section 3 and the rest): outside tools call these
    command lines, so every option it shows must be one the command takes."""
    contract = SAMPLES.parent / "reference" / "contract.md"
    if not contract.is_file():
        pytest.skip(f"the contract is not at {contract} (../shared beside the clone)")
    assert wrong_command_lines(contract.read_text(encoding="utf-8"), _cli_options()) == []


def test_the_reason_codes_are_the_contracts() -> None:
    """Every refusal carries a code of the contract (section 2's table, and the two the evidence section adds), and
    every code the contract names exists: a tool written against the contract can match on all of them."""
    from axis.core.reasons import Reason

    contract = SAMPLES.parent / "reference" / "contract.md"
    if not contract.is_file():
        pytest.skip(f"the contract is not at {contract} (../shared beside the clone)")
    text = contract.read_text(encoding="utf-8")
    table = text.split("## 2. Reason codes", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| ([A-Z_]+) \|", table, re.M))
    evidence = text.split("## 5.", 1)[1].split("\n## ", 1)[0]  # its refusals of proofs and tree heads
    named |= set(re.findall(r"`([A-Z]+_[A-Z_]+)`", evidence))
    assert len(named) >= 15, "the contract's table was not found"
    assert {r.value for r in Reason} == named


def test_the_check_finds_what_is_wrong() -> None:
    """The resolvers are not vacuous: each kind of stale reference is caught, each kind of good one passes."""
    assert resolves("axis.core.verify.Verifier.verify")
    assert resolves("axis.core.wire.HEADER_LIST_ITEMS")
    assert resolves("axis.config.model.Limits.max_recipients")  # a dataclass field
    assert not resolves("axis.broker.transport.HEADER_LIST_ITEMS")  # it moved to axis.core.wire
    assert not resolves("axis.config.rename_agency")  # it lives in axis.config.renames
    assert not resolves("axis.verify.Verifier")  # the module before the restructuring
    verify = importlib.import_module("axis.core.verify")
    assert resolves_in(verify, "Verifier.verify") and resolves_in(verify, "verify_with_facts")
    assert resolves_in(verify, "asyncio.to_thread")
    assert not resolves_in(verify, "Verifier.no_such_method") and not resolves_in(verify, "no_such_function")
    assert _missing_paths("see `axis/core/verify.py` and `docs/core.md`") == []
    assert _missing_paths("see `axis/verify.py`") == ["axis/verify.py"]
    assert "axis.submit" in NOT_MODULES and "axis.endpoints" in NOT_MODULES
    commands = _cli_options()
    assert wrong_command_lines("run `axis envelope verify --jobs 2 DIR` then `axis up --config c.yaml`", commands) == []
    assert wrong_command_lines("`axis envelope verify --no-such-flag DIR`", commands) == [
        "axis envelope verify --no-such-flag"]
    assert wrong_command_lines("`python bench/cpu_per_doc.py --documents 10 --nope`", commands) == [
        "bench/cpu_per_doc.py --nope"]
    assert wrong_command_lines("`python bench/gone.py`", commands) == ["bench/gone.py"]
