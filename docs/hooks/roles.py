"""A griffe extension for the API reference: the docstrings' Sphinx roles become cross-references.

The docstrings write references as Sphinx does (``:class:`OneCycle```, ``:func:`~lightning_cyclic.lr_find```),
which read well in the source and in ``help()``. Here each one becomes a mkdocstrings cross-reference to the
object it names, resolved where the docstring is (the class's members, the module's names and imports),
preferring an object of the role's kind as Sphinx does (``:func:`fallback``` in a class with a ``fallback``
field names the module's function), and followed through re-exports to the object's own page. A name that
resolves to nothing is a warning, so ``mkdocs build --strict`` fails on it; a name in a private module
(``_compat``) is shown as code, unlinked. A reST literal-block marker (``Example::``) becomes a plain colon.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(class|func|meth|attr|mod|data|exc|obj):`(~?)([A-Za-z_][\w.]*)`")
KINDS = {"class": "class", "exc": "class", "func": "function", "meth": "function", "attr": "attribute"}
KINDS.update(data="attribute", mod="module")
LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)
logger = griffe.logger


def _final(obj: griffe.Object, path: str) -> Any:
    target: Any = obj.modules_collection.get_member(path)
    while target.is_alias:
        target = target.final_target
    return target


def _final_path(obj: griffe.Object, role: str, name: str) -> str:
    """The full path of the object ``name`` names in the scope of ``obj``, through aliases."""
    first, _, rest = name.partition(".")
    if first in obj.modules_collection:  # a full path: lightning_cyclic.shapes.Schedule
        return str(_final(obj, name).path)
    found = []  # the objects of that name, innermost scope first
    scope: Any = obj
    while scope is not None:
        member = scope.members.get(first)
        if member is not None:
            path = member.target_path if member.is_alias else member.path
            found.append(_final(obj, f"{path}.{rest}" if rest else path))
        scope = scope.parent
    if not found:
        raise LookupError(name)
    kind = KINDS.get(role)
    return str(next((target for target in found if target.kind.value == kind), found[0]).path)


def _is_private(path: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in path.split("."))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of a loaded package (see the module's docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._visit(pkg, set())

    def _visit(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, seen)  # type: ignore[arg-type]

    def _rewrite(self, obj: griffe.Object, text: str) -> str:
        def link(match: re.Match[str]) -> str:
            role, short, name = match.group(1), match.group(2) == "~", match.group(3)
            shown = name.rsplit(".", 1)[-1] if short else name
            try:
                path = _final_path(obj, role, name)
            except Exception:
                logger.warning("%s: the docstring names %r, which resolves to nothing", obj.path, match.group(0))
                return f"`{shown}`"
            return f"`{shown}`" if _is_private(path) else f"[`{shown}`][{path}]"

        return LITERAL_MARKER.sub(":", ROLE.sub(link, text))
