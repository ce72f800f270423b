"""MkDocs hooks of this project's docs: the README is the front page, with every link as in the repository.

The README becomes the index page, and CONTRIBUTING.md, the recipes' READMEs and their pictures are added to the
site at their paths in the repository; ``docs/`` (the guide, the pictures, the API reference) is the site's root.
Every page is written with its links as they resolve in the repository (``docs/guide/app.md`` links to
``../../recipes/sweep/README.md`` and ``../../README.md``): each relative link to a file of the site is rewritten
to where that file is in the site, so every link resolves in the site as it does on GitHub. After the
build, every public name (those of ``lightning_cyclic`` and of ``lightning_cyclic.shapes``) must have its entry
in the API reference, and every link to a section (``page.html#id``) must find it, or the build fails: MkDocs
does not see the sections mkdocstrings writes.
"""

from __future__ import annotations

import ast
import html
import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import griffe
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
MIRRORED = ("CONTRIBUTING.md", "recipes/*/README.md", "recipes/*/*.png")
LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?\)")  # ](target#anchor), of a link or a picture


def mirrored() -> list[str]:
    """The files of the repository outside ``docs/`` that the site has at their paths."""
    return [path.relative_to(ROOT).as_posix() for pattern in MIRRORED for path in sorted(ROOT.glob(pattern))]


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / "README.md")))
    for path in mirrored():
        files.append(File.generated(config, path, abs_src_path=str(ROOT / path)))
    return files


def site_path(repo_path: str) -> str | None:
    """Where a file of the repository is in the site, or None when the site does not have it."""
    if repo_path == "README.md":
        return "index.md"
    if repo_path.startswith("docs/"):
        return repo_path.removeprefix("docs/")
    return repo_path if repo_path in mirrored() else None


def repo_path(src_uri: str) -> str:
    """Where a page of the site is in the repository."""
    if src_uri == "index.md":
        return "README.md"
    return f"docs/{src_uri}" if (ROOT / "docs" / src_uri).is_file() else src_uri


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """The page's relative links, written for the repository, pointed at the same files in the site."""
    here = PurePosixPath(repo_path(page.file.src_uri)).parent
    there = PurePosixPath(page.file.src_uri).parent

    def rewrite(m: re.Match[str]) -> str:
        target = m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return m.group(0)
        linked = posixpath.normpath((here / target).as_posix())
        site = site_path(linked) if (ROOT / linked).is_file() else None
        if site is None:  # not a file of the site: left as written (MkDocs warns about it, and --strict fails)
            return m.group(0)
        return f"{m.group(1)}{posixpath.relpath(site, there)}{m.group(3) or ''})"

    return LINK.sub(rewrite, markdown)


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
