"""What the MCP server may run, and where it may listen: pure checks, no SDK.

A workflow file is code (loading it imports its step modules; running it runs them), so the
server runs only files under its roots: ``--root DIR`` (default: the working directory) and its
template folder. A path is resolved with every symlink followed before it is compared, so a link
under a root that points outside is refused. An inline workflow (the document itself sent by the
client) runs only with ``--allow-inline``: it can name any importable function as a step, which
is as much as a shell. Every refusal is a :class:`~mcpp.errors.RefusedError` whose message says
what to change.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mcpp.errors import RefusedError

__all__ = ["DEFAULT_MAX_RUNS", "Policy", "looks_like_path", "parse_http"]

DEFAULT_MAX_RUNS: Final = 4


def looks_like_path(target: str) -> bool:
    """True if ``target`` names a file (a separator or a workflow suffix), not a template."""
    from mcpp.workflow.bounded import FORMATS  # msgspec and yaml: not for `mcpp --help`

    return "/" in target or os.sep in target or os.path.splitext(target)[1].lower() in FORMATS


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class Policy:
    """The server's rules. ``roots`` are resolved folders (the first one is where relative
    paths start); ``template_dir`` is the template folder (one of the roots)."""

    roots: tuple[Path, ...]
    template_dir: Path
    allow_inline: bool = False
    max_runs: int = DEFAULT_MAX_RUNS
    keep_runs: bool = False

    @classmethod
    def make(
        cls,
        root: str | os.PathLike[str],
        template_dir: str | os.PathLike[str] | None = None,
        *,
        allow_inline: bool = False,
        max_runs: int = DEFAULT_MAX_RUNS,
        keep_runs: bool = False,
    ) -> Policy:
        """A policy for ``root`` (resolved now) and ``template_dir`` (default ``ROOT/templates``).

        Raises RefusedError if ``root`` is not a folder or ``max_runs`` is below 1.
        """
        base = Path(os.path.realpath(root))
        if not base.is_dir():
            raise RefusedError(f"--root {root}: not a folder")
        if max_runs < 1:
            raise RefusedError(f"--max-runs {max_runs}: must be at least 1")
        templates = Path(os.path.realpath(base / (template_dir or "templates")))
        return cls(
            roots=(base, templates),
            template_dir=templates,
            allow_inline=allow_inline,
            max_runs=max_runs,
            keep_runs=keep_runs,
        )

    @property
    def root(self) -> Path:
        """The main root: relative paths start here."""
        return self.roots[0]

    def resolve(self, path: str) -> str:
        """The real absolute path of the workflow file ``path`` (relative to :attr:`root`).

        Raises RefusedError when it is outside every root (after following symlinks).
        """
        given = Path(path).expanduser()
        real = Path(os.path.realpath(given if given.is_absolute() else self.root / given))
        if not any(_inside(real, root) for root in self.roots):
            shown = ", ".join(str(root) for root in self.roots)
            raise RefusedError(
                f"{path}: outside the server's roots ({shown}); this server runs only workflow "
                "files under --root (start it with another --root to allow more)"
            )
        return str(real)

    def trusted(self, source: str | None) -> bool:
        """True if a journalled run's workflow file ``source`` lies under a root."""
        if source is None:
            return False
        real = Path(os.path.realpath(source))
        return any(_inside(real, root) for root in self.roots)

    def check_inline(self) -> None:
        """Raise RefusedError unless inline workflows are allowed."""
        if not self.allow_inline:
            raise RefusedError(
                "inline workflows are off: this server runs only workflow files under its "
                "--root (start it with --allow-inline to accept workflow documents)"
            )


def parse_http(text: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """Parse ``--http HOST:PORT`` (``PORT`` alone means 127.0.0.1; port 0 picks a free one).

    Raises RefusedError for a malformed value, and for a host that is not a loopback address
    unless ``allow_remote`` (the server has no authentication: anyone who reaches the port can
    run the workflows under its roots).
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise RefusedError(f"--http {text}: expected HOST:PORT with a port 0-65535")
    if not allow_remote and not _is_loopback(host):
        raise RefusedError(
            f"--http {text}: {host} is not a loopback address; the server has no "
            "authentication, so anyone who reaches it can run workflows (add --allow-remote "
            "to listen there anyway)"
        )
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
