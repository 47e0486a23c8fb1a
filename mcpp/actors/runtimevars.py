"""The run secret, handed from parent to child actor out of band.

The secret travels in tractor's runtime variables, which a parent sends to a child over the
connection the child itself opened to its parent during the spawn handshake. It is never on a
command line, in the environment or in a log (tractor logs runtime variables only at its
'runtime' log level, which mcpp never enables).
"""

from __future__ import annotations

from tractor import _state

from mcpp.errors import RunError

__all__ = ["get_secret", "known_secret", "set_secret"]

SECRET_KEY = "mcpp_secret"


def set_secret(secret: str) -> None:
    """Make ``secret`` part of what this process passes to every actor it starts next."""
    _state._runtime_vars[SECRET_KEY] = secret


def known_secret() -> str | None:
    """Return the secret this actor was started with, or ``None``.

    Actors forked by a forkserver get no runtime variables from tractor: they have none.
    """
    secret = _state._runtime_vars.get(SECRET_KEY)
    return secret if isinstance(secret, str) and secret else None


def get_secret() -> str:
    """Return the secret this actor was started with; raise RunError if it has none."""
    secret = _state._runtime_vars.get(SECRET_KEY)
    if not isinstance(secret, str) or not secret:
        raise RunError("this actor was started without a run secret")
    return secret
