"""The authkey: read from a file whose path is given, never from the command line or env.

``--authkey-file PATH`` or ``DISTPROC_AUTHKEY_FILE=PATH`` (a path, never the key itself).
The key is never printed or logged. Anyone who has it can make the master unpickle what they
send, which means running code there: treat it like a password to a shell.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "DISTPROC_AUTHKEY_FILE"


class AuthkeyError(Exception):
    """No usable authkey: the CLI prints the message and exits 2."""


def read_authkey(path: str | None) -> bytes:
    """The key from ``path`` or from the file named by ``$DISTPROC_AUTHKEY_FILE``."""
    source = path or os.environ.get(ENV_VAR)
    if not source:
        raise AuthkeyError(
            f"no authkey: pass --authkey-file PATH or set {ENV_VAR}=PATH "
            "(a file holding the key; the key itself is never passed on the command line)"
        )
    try:
        key = Path(source).read_bytes().strip()
    except OSError as exc:
        raise AuthkeyError(f"cannot read the authkey file {source}: {exc.strerror}") from None
    if not key:
        raise AuthkeyError(f"the authkey file {source} is empty")
    return key
