"""MkDocs hooks of this project's docs: the README is the front page, with every link as in the repository.

The README becomes the index page. Its links into ``docs/`` (the pictures, the API reference) point into the
docs folder, which is the site's root; the recipes' READMEs and their pictures are added to the site at their
paths in the repository. So every relative link resolves in the site as it does in the repository. After the
build, every public name (those of ``lightning_cyclic`` and of ``lightning_cyclic.shapes``) must have its entry
in the API reference, and every link to a section (``page.html#id``) must find it, or the build fails: MkDocs
does not see the sections mkdocstrings writes.
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import griffe
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
MIRRORED = ("recipes/*/README.md", "recipes/*/*.png")


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / "README.md")))
    for pattern in MIRRORED:
        for path in sorted(ROOT.glob(pattern)):
            files.append(File.generated(config, path.relative_to(ROOT).as_posix(), abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri == "index.md":  # the README: docs/ is the root here
        return markdown.replace("](docs/", "](")
    return markdown


def public_paths() -> dict[str, str]:
    """Each public name (``lightning_cyclic.OneCycle``) and the path of the object it is (where it is documented)."""
    package = griffe.load("lightning_cyclic", search_paths=[str(ROOT)])
    exports = ast.literal_eval(str(package["_EXPORTS"].value))
    names = [f"lightning_cyclic.{name}" for name in exports]
    names += [f"lightning_cyclic.shapes.{name}" for name in package["shapes"].exports or ()]
    out = {}
    for name in names:
        obj: Any = package[name.removeprefix("lightning_cyclic.")]
        out[name] = obj.final_target.path if obj.is_alias else obj.path
    return out


def broken_anchors(site: Path) -> list[str]:
    """Links to a section of a page of the site (``page.html#id``, ``#id``) where that page has no such id."""
    texts = {path.resolve(): path.read_text(encoding="utf-8") for path in site.rglob("*.html")}
    ids = {path: set(re.findall(r'\bid="([^"]+)"', text)) for path, text in texts.items()}
    broken = []
    for path, text in texts.items():
        for href in re.findall(r'\bhref="([^"]+)"', text):
            target, _, anchor = html.unescape(href).partition("#")
            if not anchor or re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue
            page = (path.parent / target).resolve() if target else path
            if page in ids and unquote(anchor) not in ids[page]:
                broken.append(f"{path.relative_to(site.resolve())}: {href}")
    return broken


def on_post_build(config: Any) -> None:
    site = Path(config.site_dir)
    pages = "".join(p.read_text(encoding="utf-8") for p in site.glob("reference/**/*.html"))
    missing = [name for name, path in public_paths().items() if f'id="{path}"' not in pages]
    if missing:
        raise PluginError(f"public names without an entry in the API reference: {', '.join(missing)}")
    broken = broken_anchors(site)
    if broken:
        raise PluginError("links to sections that do not exist:\n  " + "\n  ".join(broken))
