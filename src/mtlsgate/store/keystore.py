"""Protects private keys at rest: AES-256-GCM under a master key kept outside the database.

The master key lives in DATA_DIR/master.key (mode 0600), or comes from MTLSGATE_MASTER_KEY
(base64 of 32 bytes) so that a fleet of nodes sharing one PostgreSQL can all read the keys while
the database alone (a dump, a backup) reveals none of them.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "aesgcm1:"


class KeyStore:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(master_key)

    @classmethod
    def for_data_dir(cls, data_dir: Path, *, create: bool = False) -> KeyStore:
        env = os.environ.get("MTLSGATE_MASTER_KEY")
        if env:
            return cls(base64.b64decode(env))
        path = data_dir / "master.key"
        if not path.exists():
            if not create:
                raise FileNotFoundError(
                    f"{path} is missing: copy it from the node that ran `mtlsgate init`, "
                    "or set MTLSGATE_MASTER_KEY"
                )
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        return cls(base64.b64decode(path.read_text().strip()))

    def seal(self, plaintext: str, *, context: str) -> str:
        """Encrypt; `context` (e.g. the record id) is bound as associated data against swaps."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, context: str) -> str:
        if not sealed.startswith(_PREFIX):
            raise ValueError("not a sealed value")
        raw = base64.b64decode(sealed[len(_PREFIX) :])
        return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
