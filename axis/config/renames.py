"""Changing an agency's code in ``config.yaml`` (the national code list is amended: Decision 20/2020/QĐ-TTg).

:func:`rename_agency` gives the agency its new code and keeps the old one in its ``aliases``: envelopes addressed
to the old code still reach it (the router and the endpoint servers resolve aliases,
:meth:`axis.core.directory.Directory.resolve`), statistics recorded under the old code are counted under the new
one (:mod:`axis.stats.query`), and agency software syncing the directory sees the new code with the old one in
its ``aliases`` and the old code ``deleted`` (:mod:`axis.core.directory_versions`). The agency keeps its server,
token, key and certificate; its signing certificate names the old code (subject UID), so documents it sends
under the new code need a certificate for the new code (``axis pki issue NEW``, or the agency lifecycle's
``rotate-cert``). Live, the running processes pick the file up by a reload (:mod:`axis.config.reload`).
"""

from __future__ import annotations

from pathlib import Path

from axis.config.directory_journal import sync_journal
from axis.config.model import Config, ConfigError
from axis.config.moves import _agency_entry, _load_raw, _write_validated
from axis.core.directory import valid_agency_code


def rename_agency(config_path: str | Path, old: str, new: str, *, name: str | None = None,
                  key: str | Path | None = None, cert: str | Path | None = None,
                  out: str | Path | None = None) -> Config:
    """Write the configuration with agency ``old`` renamed to ``new`` (``old`` and its own former codes become
    aliases of ``new``; ``name`` replaces its name, ``key``/``cert`` its signing key and certificate paths — one
    issued for ``new`` — when given), advance the directory journal, and return the
    configuration. Written atomically to ``out`` (default: over ``config_path``) only if the result validates.
    Renaming back to a former code takes that code out of the aliases. Raises :class:`ConfigError`: an unknown
    agency, a malformed new code, a code already taken by another agency or alias, agencies in ``agencies_file``."""
    path = Path(config_path).expanduser().resolve()
    if not valid_agency_code(new):
        raise ConfigError(f"{new!r} is not an agency code (QCVN 102:2016 or QĐ 20/2020 form)")
    if new == old:
        raise ConfigError(f"agency {old} already has the code {new}")
    raw = _load_raw(path)
    entry = _agency_entry(raw, old, path)
    for other in raw.get("agencies") or []:
        if other is entry or not isinstance(other, dict):
            continue
        if str(other.get("code")) == new or new in [str(c) for c in other.get("aliases") or ()]:
            raise ConfigError(f"the code {new} is already agency {other.get('code')}'s")
    entry["code"] = new
    entry["aliases"] = [c for c in dict.fromkeys([*(str(c) for c in entry.get("aliases") or ()), old]) if c != new]
    if name is not None:
        entry["name"] = name
    if key is not None:
        entry["key"] = str(key)
    if cert is not None:
        entry["cert"] = str(cert)
    for server in raw.get("servers") or []:
        if isinstance(server, dict) and old in [str(k) for k in server.get("keys") or ()]:
            server["keys"] = [new if str(k) == old else k for k in server["keys"]]
    config = _write_validated(raw, path, out)
    sync_journal(config)
    return config
