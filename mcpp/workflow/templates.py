"""Templates: versioned workflow files in a folder, and workflows composed from them.

A template is an ordinary workflow file whose ``[workflow]`` table may carry a ``version``
(semantic versioning, ``MAJOR.MINOR.PATCH[-PRE][+BUILD]``) and a ``description``; its
``[params]`` are the template's parameters (see :mod:`mcpp.workflow.params`). A
:class:`TemplateRegistry` lists the workflow files directly inside one folder (not its
subfolders) and finds them by ``NAME`` (the newest release, else the newest pre-release, else
the unversioned file) or ``NAME@VERSION`` (that exact version).

Composition: a workflow file may include other workflows' steps::

    [[include]]
    template = "etl@1.0.0"     # or: path = "other.toml" (relative to the including file)
    prefix = "etl"             # the included steps become etl_extract, etl_load, ...
    params = { rows = "${rows}" }   # the included workflow's parameters; ${...} are ours

Included steps are renamed ``PREFIX_ID`` and their dependencies with them; a step of the
including file can depend on ``etl_load``. The included workflow is loaded and validated on its
own first (recursively, with its own includes); the composed workflow is validated again as a
whole by the loader. Because an upstream result arrives as a keyword argument named by the
upstream step's id, an included step's ``inputs`` map each prefixed upstream id back to the
name its function knows.

Templates named in an include are looked up in the including file's folder first, then in the
default folder (:func:`default_template_dir`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from mcpp.errors import WorkflowError
from mcpp.workflow.bounded import FORMATS, read_document
from mcpp.workflow.params import ParamSpec, declare_params
from mcpp.workflow.spec import StepSpec, WorkflowSpec

__all__ = [
    "Include",
    "Template",
    "TemplateRegistry",
    "Version",
    "default_template_dir",
    "include_steps",
    "split_ref",
]

_log = logging.getLogger(__name__)

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


@functools.total_ordering
class Version:
    """A semantic version; ordered by semver precedence (build metadata ignored).

    ``1.10.0 > 1.9.0``; a pre-release is older than its release (``1.0.0-rc.1 < 1.0.0``);
    pre-release identifiers compare numerically when numeric, numeric before alphanumeric.
    """

    __slots__ = ("_key", "text")

    def __init__(self, text: str) -> None:
        """Parse ``text``; raise :class:`~mcpp.errors.WorkflowError` if it is not semver (or
        longer than 128 characters)."""
        match = _SEMVER.fullmatch(text) if len(text) <= 128 else None
        if match is None:
            raise WorkflowError(
                f"version {text[:40]!r} is not a semantic version of at most 128 characters "
                "(MAJOR.MINOR.PATCH, e.g. 1.2.0)",
                field="workflow.version",
            )
        pre = match[4].split(".") if match[4] else []
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre)
        self.text = text
        self._key = (int(match[1]), int(match[2]), int(match[3]), not pre, ids)

    @property
    def prerelease(self) -> bool:
        """True for a pre-release such as ``1.0.0-rc.1``."""
        return not self._key[3]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key == other._key

    def __lt__(self, other: Version) -> bool:
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


def split_ref(ref: str) -> tuple[str, str | None]:
    """Split ``"NAME@VERSION"`` into ``(NAME, VERSION)``; ``"NAME"`` gives ``(NAME, None)``."""
    name, sep, version = ref.partition("@")
    if not name or (sep and not version):
        raise WorkflowError(f"invalid template reference {ref!r}: expected NAME[@VERSION]")
    return name, version if sep else None


def default_template_dir() -> str:
    """The default template folder: ``$MCPP_TEMPLATES``, else ``./templates``."""
    return os.environ.get("MCPP_TEMPLATES") or "templates"


class Template(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow file of a registry, read but not loaded (no step module is imported)."""

    name: str
    version: str | None
    path: str
    description: str = ""
    params: dict[str, ParamSpec] = {}
    steps: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``NAME@VERSION``, or ``NAME`` for an unversioned file."""
        return f"{self.name}@{self.version}" if self.version else self.name

    def sort_key(self) -> tuple[bool, Version | None]:
        """Older first: unversioned, then by version."""
        return (self.version is not None, Version(self.version) if self.version else None)


class TemplateRegistry:
    """The workflow files directly inside ``folder``, by name and version.

    The folder is read on first use. A file that cannot be read as a template (not a regular
    file, too big, not UTF-8, invalid content, bad version) is left out and reported in
    :attr:`problems`, and :meth:`find` logs a warning naming each such file (once per
    registry); a missing folder is an empty registry.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = os.fspath(folder)
        self._by_name: dict[str, list[Template]] | None = None
        self._problems: list[WorkflowError] = []
        self._warned = False

    def __repr__(self) -> str:
        return f"TemplateRegistry({self.folder!r})"

    @property
    def problems(self) -> tuple[WorkflowError, ...]:
        """The files left out, each as the error that names the file and why."""
        self._scan()
        return tuple(self._problems)

    def templates(self) -> tuple[Template, ...]:
        """Every template: by name, then newest version first."""
        by_name = self._scan()
        return tuple(t for name in sorted(by_name) for t in reversed(by_name[name]))

    def __contains__(self, name: object) -> bool:
        return name in self._scan()

    def find(self, ref: str) -> Template:
        """Return the template ``NAME`` or ``NAME@VERSION`` (see the module doc for which).

        Raises :class:`~mcpp.errors.WorkflowError` for an unknown name or version (listing
        the known ones) and when two files declare the same name and version.
        """
        name, version = split_ref(ref)
        found = self._scan().get(name)
        if not self._warned:
            self._warned = True
            for problem in self._problems:
                _log.warning("mcpp: skipped template file %s", problem)
        if not found:
            known = ", ".join(sorted(self._scan())) or "none"
            raise WorkflowError(f"unknown template {name!r} in {self.folder!r} (known: {known})")
        if version is None:
            releases = [t for t in found if t.version and not Version(t.version).prerelease]
            chosen = [(releases or found)[-1]]
        else:
            wanted = Version(version)
            chosen = [t for t in found if t.version and Version(t.version) == wanted]
            if not chosen:
                versions = ", ".join(t.version or "unversioned" for t in reversed(found))
                raise WorkflowError(
                    f"template {name!r} has no version {version!r} (versions: {versions})"
                )
        same = [t for t in found if t.version == chosen[-1].version]
        if len(same) > 1:
            files = ", ".join(t.path for t in same)
            raise WorkflowError(f"template {chosen[-1].ref!r} is defined twice: {files}")
        return chosen[-1]

    def _scan(self) -> dict[str, list[Template]]:
        if self._by_name is not None:
            return self._by_name
        by_name: dict[str, list[Template]] = {}
        try:
            names = sorted(os.listdir(self.folder))
        except OSError:
            names = []
        for entry in names:
            path = os.path.join(self.folder, entry)
            if os.path.splitext(entry)[1].lower() not in FORMATS:
                continue
            try:
                template = _read_template(path)
            except WorkflowError as exc:
                self._problems.append(exc if exc.file else exc.in_file(path))
                continue
            by_name.setdefault(template.name, []).append(template)
        for found in by_name.values():
            found.sort(key=Template.sort_key)
        self._by_name = by_name
        return by_name


def _read_template(path: str) -> Template:
    raw = read_document(path)
    head = raw.get("workflow") if isinstance(raw, dict) else None
    if not isinstance(head, dict) or not isinstance(head.get("name"), str):
        raise WorkflowError("not a workflow file: no [workflow] name", field="workflow.name")
    for key, kind in (("params", dict), ("steps", list), ("include", list)):
        if not isinstance(raw.get(key) or kind(), kind):
            raise WorkflowError(f"expected {'a table' if kind is dict else 'an array'}", field=key)
    version = head.get("version")
    if version is not None:
        if not isinstance(version, str):
            raise WorkflowError("expected a string", field="workflow.version")
        Version(version)
    description = head.get("description", "")
    steps = raw.get("steps") or []
    includes = raw.get("include") or []
    return Template(
        name=head["name"],
        version=version,
        path=path,
        description=description if isinstance(description, str) else "",
        params=declare_params(raw.get("params") or {}),
        steps=tuple(s["id"] for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)),
        includes=tuple(
            str(i.get("template") or i.get("path")) for i in includes if isinstance(i, dict)
        ),
    )


class Include(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[include]]`` entry of a workflow file: exactly one of ``template`` and ``path``."""

    prefix: str
    template: str | None = None
    path: str | None = None
    params: dict[str, Any] = {}


Loader = Callable[[str, Mapping[str, Any], tuple[tuple[str, str], ...]], WorkflowSpec]


def include_steps(
    entry: Include,
    field: str,
    file: str,
    params: Mapping[str, Any],
    chain: tuple[tuple[str, str], ...],
    load: Loader,
) -> WorkflowSpec:
    """Load the workflow that ``entry`` of ``file`` names and return it with prefixed steps.

    ``params`` are the entry's parameters (already substituted); ``chain`` holds ``(real
    path, label)`` of every file being loaded, outermost first, ending with ``file``; ``load``
    is the loader's ``load(path, params, chain)``. Raises
    :class:`~mcpp.errors.WorkflowError` with ``field`` (``include[i]``) for an entry with
    neither or both sources, an invalid prefix, an unknown template and an include cycle
    (naming every file of the cycle); errors inside the included file name that file.
    """
    if (entry.template is None) == (entry.path is None):
        raise WorkflowError("give exactly one of 'template' and 'path'", field=field)
    if not entry.prefix.isidentifier():
        raise WorkflowError(
            f"prefix {entry.prefix!r} must be an identifier (it starts the step ids)",
            field=field,
        )
    folder = os.path.dirname(os.path.abspath(file))
    if entry.template is not None:
        label = entry.template
        name, _ = split_ref(entry.template)
        local = TemplateRegistry(folder)
        registry = local if name in local else TemplateRegistry(default_template_dir())
        try:
            target = registry.find(entry.template).path
        except WorkflowError as exc:
            raise WorkflowError(exc.reason, field=field) from None
    else:
        assert entry.path is not None
        label = entry.path
        target = os.path.join(folder, entry.path)
    real = os.path.realpath(target)
    seen = [r for r, _ in chain]
    if real in seen:
        cycle = [lbl for _, lbl in chain[seen.index(real) :]] + [label]
        raise WorkflowError("include cycle: " + " -> ".join(cycle), field=field)
    spec = load(target, params, (*chain, (real, label)))
    return msgspec.structs.replace(spec, steps=tuple(_rename(s, entry.prefix) for s in spec.steps))


def _rename(step: StepSpec, prefix: str) -> StepSpec:
    """``step`` of an included workflow, its id and upstream ids prefixed; each upstream result
    keeps reaching the function under the name it knows (``StepSpec.inputs``)."""
    return msgspec.structs.replace(
        step,
        id=f"{prefix}_{step.id}",
        depends_on=tuple(f"{prefix}_{dep}" for dep in step.depends_on),
        inputs={f"{prefix}_{dep}": step.inputs.get(dep, dep) for dep in step.depends_on},
    )
