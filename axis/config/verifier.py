"""The one :class:`~axis.core.verify.Verifier` of a process, from the configuration's trust anchors."""

from __future__ import annotations

from axis.config.model import Config
from axis.core.verify import Verifier, VerifyPolicy


def make_verifier(config: Config, *, require_signature: bool = True) -> Verifier:
    """The one Verifier of a process: trusts the configured axis CA and CRL."""
    if config.pki.ca is None:
        raise ValueError("the configuration names no pki.ca: nothing could be verified")
    return Verifier(VerifyPolicy.from_files(config.pki.ca, config.pki.crl, max_bytes=config.limits.max_envelope_bytes,
                                            require_signature=require_signature,
                                            crl_max_age=config.pki.crl_max_age))
