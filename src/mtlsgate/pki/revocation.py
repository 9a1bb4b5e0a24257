"""Which verified client certificates count as revoked: the one index the edge consults.

Pure data, built by edge/runtime/config_sync.py per account and shared by every hostname of that
account. Managed-CA revocations (helper-built from the store), uploaded CAs' CRLs and the account
deny-list all land here, so the edge asks one question per verified handshake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IssuerRevocations:
    """Revocations of certificates signed by one CA (the key in RevocationIndex.issuers)."""

    serials: frozenset[int]
    source: str  # "managed" (managed CA revocations) or "crl" (uploaded CA's CRL)
    # "crl_stale" / "crl_missing": a fail_closed CA whose CRL is not usable; every certificate
    # it signed counts as revoked with this reason.
    unavailable: str | None = None


@dataclass(frozen=True)
class RevocationIndex:
    issuers: Mapping[bytes, IssuerRevocations]  # key: SHA-256 (raw 32 bytes) of the issuing CA cert
    deny_serials: frozenset[int] = frozenset()  # account deny-list, any issuer
    deny_fingerprints: frozenset[bytes] = frozenset()  # account deny-list, leaf SHA-256 (raw)
    # Derived once per snapshot (see may_revoke): every serial that can revoke, whoever issued
    # it, and whether some answer depends on fingerprints alone.
    _serials: frozenset[int] = field(init=False, repr=False, compare=False)
    _fingerprints_decide: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        entries = self.issuers.values()
        object.__setattr__(self, "_serials", self.deny_serials.union(*(e.serials for e in entries)))
        object.__setattr__(
            self,
            "_fingerprints_decide",
            bool(self.deny_fingerprints) or any(e.unavailable is not None for e in entries),
        )

    def may_revoke(self, leaf_serial: int) -> bool:
        """False only when `reason` is None for this serial whatever the fingerprints are: the
        edge's cheap first question, so a handshake whose serial no list names pays neither for
        the verified chain nor for a SHA-256. True when the serial is listed (by any issuer or
        the deny-list), the deny-list has fingerprints, or a fail_closed CA's CRL is unusable
        (every leaf of that issuer is revoked, whatever its serial)."""
        return self._fingerprints_decide or leaf_serial in self._serials

    def reason(
        self, leaf_serial: int, leaf_sha256: bytes, issuer_sha256: bytes | None
    ) -> str | None:
        """None when not revoked; else "denylist", "managed", "crl", "crl_stale" or "crl_missing".

        The deny-list wins (an emergency block is the operator's most explicit word); then the
        issuer's own list. A self-signed leaf (issuer None) can only be deny-listed.
        """
        if leaf_serial in self.deny_serials or leaf_sha256 in self.deny_fingerprints:
            return "denylist"
        if issuer_sha256 is None:
            return None
        entry = self.issuers.get(issuer_sha256)
        if entry is None:
            return None
        if entry.unavailable is not None:
            return entry.unavailable
        if leaf_serial in entry.serials:
            return entry.source
        return None

    def empty(self) -> bool:
        """True when there is nothing to check (config_sync then stores None instead)."""
        return not (self.issuers or self.deny_serials or self.deny_fingerprints)
