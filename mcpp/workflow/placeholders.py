"""``${name}`` placeholders: a workflow's parameters substituted into its values.

A string that is exactly one placeholder becomes the parameter's value itself, keeping its type
(``"${rows}"`` becomes the int ``1000``, a copy); inside a longer string a str value is inserted
as is and any other value as JSON (``true``, ``[1, 2]``). ``$${`` stands for a literal ``${``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import msgspec.json

from mcpp.errors import WorkflowError

__all__ = ["WHOLE_PLACEHOLDER", "substitute"]

TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
WHOLE_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def substitute(value: Any, params: dict[str, Any], step: str | None, field: str, where: str) -> Any:
    """``value`` with every placeholder in its strings (at any depth) replaced from ``params``.

    ``where`` names the value in messages (``args.rows``). Raises
    :class:`~mcpp.errors.WorkflowError` (``step``, ``field``) for an undefined parameter, an
    invalid name or an unclosed placeholder.
    """
    if isinstance(value, str):
        return substitute_text(value, params, step, field, where)
    if isinstance(value, list):
        return [
            substitute(item, params, step, field, f"{where}[{i}]") for i, item in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            key: substitute(item, params, step, field, f"{where}.{key}")
            for key, item in value.items()
        }
    return value


def substitute_text(
    text: str, params: dict[str, Any], step: str | None, field: str, where: str
) -> Any:
    """One string's placeholders replaced, as :func:`substitute`."""

    def lookup(name: str) -> Any:
        if not name.isidentifier():
            raise WorkflowError(
                f"invalid placeholder '${{{name}}}' in {where}: a parameter name is an "
                "identifier (write '$${' for a literal '${')",
                step=step,
                field=field,
            )
        if name not in params:
            known = ", ".join(params) or "none"
            raise WorkflowError(
                f"undefined parameter {name!r} in {where} (declared: {known})",
                step=step,
                field=field,
            )
        return params[name]

    whole = WHOLE_PLACEHOLDER.fullmatch(text)
    if whole is not None:
        return copy.deepcopy(lookup(whole[1]))

    def replace(token: re.Match[str]) -> str:
        if token[0] == "$${":
            return "${"
        if token[1] is None:
            raise WorkflowError(
                f"unclosed placeholder in {where}: {text!r} (write '$${{' for a literal '${{')",
                step=step,
                field=field,
            )
        value = lookup(token[1])
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, bool | int | float | list | dict):
            return msgspec.json.encode(value).decode()
        return str(value)

    return TOKEN.sub(replace, text)
