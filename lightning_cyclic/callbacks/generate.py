"""Write the shipped schedule callbacks' signatures and ``Args`` from their shapes' fields.

A schedule's arguments are declared once, as the fields of its shape (:func:`lightning_cyclic.shapes.args.arg`:
default, check, one line of documentation). The callbacks in :mod:`lightning_cyclic.callbacks.cycles` and
:mod:`~lightning_cyclic.callbacks.decays` take the
same arguments plus the Lightning side's own (``interval``, ``total_steps``, ``log``, ``finder``, ``optimizer``),
and their ``__init__`` and the ``Args`` of their docstrings are generated here, as code checked in, so that
LightningCLI (jsonargparse), the API reference, IDEs and type checkers all read a real signature. The prose of
each docstring, above ``Args:``, is written by hand and kept.

    python -m lightning_cyclic.callbacks.generate          # rewrite the two modules from the shapes
    python -m lightning_cyclic.callbacks.generate --check  # exit 1 if it is not current (a test runs this)
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

MODULES = ("lightning_cyclic.callbacks.cycles", "lightning_cyclic.callbacks.decays")
WIDTH = 120
# the Lightning side's own arguments: (name, annotation, default, documentation); {lengths} names the lengths
OWN = (
    ("interval", "str", None, '``"step"`` or ``"epoch"``, the unit of {lengths}.'),
    (
        "total_steps",
        "int | None",
        "None",
        "run length in optimizer steps; default ``trainer.estimated_stepping_batches``.",
    ),
    (
        "log",
        "bool",
        "True",
        "log ``lr`` and ``momentum`` to the Trainer's loggers "
        "(see :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback`).",
    ),
    (
        "finder",
        "LRFinder | None",
        "None",
        'the :class:`~lightning_cyclic.LRFinder` whose result ``"auto"`` takes (default: the Trainer\'s, or a new '
        "one).",
    ),
    (
        "optimizer",
        "int | list[int] | None",
        "None",
        "which of ``trainer.optimizers`` to drive: an index, a list of them, or ``None`` (all).",
    ),
)


def _own(callback: Any) -> list[tuple[str, str, str | None, str]]:
    """The Lightning side's arguments that ``callback`` takes, with the default of its ``interval``."""
    out = []
    for name, hint, default, doc in OWN:
        if name == "interval":
            if callback.default_interval is None:  # (OneCycle counts optimizer steps only)
                continue
            default = _literal(callback.default_interval)
        if name == "total_steps" and not callback.takes_total_steps:
            continue
        if name == "finder" and not any(arg.auto for arg in callback.schedule_cls.ARGS.values()):
            continue
        out.append((name, hint, default, doc))
    return out


def _literal(value: Any) -> str:
    """``value`` as source, strings in double quotes (as the formatter writes them)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _fields(callback: Any) -> list[tuple[str, str, str | None, str]]:
    """The shape's declared arguments: ``(name, annotation, default or None, documentation)``."""
    out = []
    for f in dataclasses.fields(callback.schedule_cls):
        if "arg" not in f.metadata:
            continue
        hint = str(f.type) + (" | str" if f.metadata["arg"].auto else "")
        default = None if f.default is dataclasses.MISSING else _literal(f.default)
        out.append((f.name, hint, default, f.metadata["doc"]))
    return out


def _lengths(callback: Any) -> str:
    names = [f"``{n}``" for n, a in callback.schedule_cls.ARGS.items() if a.unit == "length"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else "its lengths"


def args_section(callback: Any) -> str:
    """The ``Args:`` block of ``callback``'s docstring."""
    lines = ["    Args:"]
    entries = [(n, d) for n, _, _, d in _fields(callback)] + [(n, d) for n, _, _, d in _own(callback)]
    for name, doc in entries:
        text = f"{name}: {doc.format(lengths=_lengths(callback))}"
        lines.append(
            textwrap.fill(
                text,
                WIDTH,
                initial_indent=" " * 8,
                subsequent_indent=" " * 12,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


def init_source(callback: Any) -> str:
    """``callback.__init__``: the shape's arguments, then the Lightning side's, handed to the base class."""
    params = [
        f"        {name}: {hint}" + ("" if default is None else f" = {default}")
        for name, hint, default, _ in (*_fields(callback), *_own(callback))
    ]
    own = [name for name, *_ in _own(callback)]
    passed = [f"interval={'interval' if 'interval' in own else _literal('step')}"]
    passed += [f"{name}={name}" for name in own if name != "interval"]
    return "\n".join(
        [
            "    def __init__(",
            "        self,",
            *(p + "," for p in params),
            "    ) -> None:",
            "        super().__init__(",
            "            self.declared(locals()),",
            *(f"            {p}," for p in passed),
            "        )",
        ]
    )


def render(source: str, module: Any) -> str:
    """``source`` (the text of one of ``MODULES``) with every generated part made from ``module``'s classes."""
    tree = ast.parse(source)
    lines = source.splitlines()
    edits: list[tuple[int, int, str]] = []  # (first line, last line, new text), 1-based and inclusive
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        callback = getattr(module, node.name, None)
        if callback is None or "schedule_cls" not in vars(callback):
            continue
        doc = node.body[0]
        if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
            raise ValueError(f"{node.name} needs a docstring (its prose is kept, its Args are generated)")
        prose = doc.value.value.split("\n    Args:")[0].rstrip()
        edits.append((doc.lineno, doc.end_lineno or doc.lineno, f'    """{prose}\n\n{args_section(callback)}\n    """'))
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            raise ValueError(f"{node.name} needs an __init__ to generate over")
        edits.append((init.lineno, init.end_lineno or init.lineno, init_source(callback)))
    for first, last, text in sorted(edits, reverse=True):
        lines[first - 1 : last] = text.split("\n")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    stale = 0
    for name in MODULES:
        module = importlib.import_module(name)
        path = Path(module.__file__ or "")
        old = path.read_text()
        new = render(old, module)
        if new == old:
            continue
        stale += 1
        if check:
            print(
                "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), str(path), "generated", lineterm=""))
            )
            print(f"{path.name} is not what its shapes declare: run python -m lightning_cyclic.callbacks.generate")
        else:
            path.write_text(new)
            print(f"wrote {path}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
