"""The contributors' architecture page names every module of the package, so it stays current with the code."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"


def test_the_architecture_page_names_every_module():
    text = PAGE.read_text()
    package = ROOT / "lightning_cyclic"
    missing = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if path.name == "__init__.py" or relative.parts[0] in ("conf", "data", "models"):
            continue  # (data/ and models/ are named as folders)
        if f"`{path.name}`" not in text and f"`{relative.as_posix()}`" not in text:
            missing.append(relative.as_posix())
    for folder in ("data/", "models/", "conf/", "hydra_plugins/"):
        if f"`{folder}`" not in text:
            missing.append(folder)
    assert not missing, f"docs/architecture.md does not name: {', '.join(missing)}"
