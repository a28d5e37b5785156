"""The shape of the code: engine and models free of QGIS, no cycle between the Processing and dock
layers, small modules, nothing private shared, and every algorithm documented for the toolbox."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGES = ("engine", "models", "processing_provider", "ui", "qgis_common")
#: Largest module (lines) any package may hold.
MAX_MODULE_LINES = 550


def modules(*packages: str):
    for package in packages:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            yield path


def dotted(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "topoclear." + ".".join(parts)


def imported_modules(path: Path):
    """(absolute module under topoclear, imported names) of every ``from ... import`` of ``path``."""
    tree = ast.parse(path.read_text())
    package = dotted(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("topoclear"):
                yield module, [a.name for a in node.names]


def test_engine_and_models_import_no_qgis():
    names = [dotted(p) for p in modules("engine", "models")]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m == 'qgis' or m.startswith('qgis.'))\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("layer, other", [("processing_provider", "ui"), ("ui", "processing_provider"),
                                          ("qgis_common", "ui"), ("qgis_common", "processing_provider"),
                                          ("engine", "qgis_common"), ("models", "engine")])
def test_layers_do_not_import_upwards_or_across(layer, other):
    offenders = [f"{p.relative_to(REPO_ROOT)} imports {m}" for p in modules(layer)
                 for m, _ in imported_modules(p) if m.startswith(f"topoclear.{other}")]
    assert not offenders, "\n".join(offenders)


def test_modules_stay_small():
    sizes = {str(p.relative_to(REPO_ROOT)): len(p.read_text().splitlines()) for p in modules(*PACKAGES)}
    large = {k: v for k, v in sizes.items() if v > MAX_MODULE_LINES}
    assert not large, large


def test_private_names_are_not_imported_across_modules():
    offenders = [f"{p.relative_to(REPO_ROOT)}: {m} {n}" for p in modules(*PACKAGES)
                 for m, names in imported_modules(p) for n in names if n.startswith("_") and n != "__version__"]
    assert not offenders, "\n".join(offenders)


def test_source_files_named_in_the_documents_exist():
    """Every ``package/.../module.py`` a tracked Markdown document names is a file of the repository."""
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    documents = [REPO_ROOT / name for name in listed.stdout.split()]
    named = re.compile(r"\b((?:%s|scripts|benchmarks|tests)/[\w/]+\.py)\b" % "|".join(PACKAGES))
    missing = [f"{doc.relative_to(REPO_ROOT)}: {m}" for doc in documents
               for m in sorted(set(named.findall(doc.read_text()))) if not (REPO_ROOT / m).is_file()]
    assert documents and not missing, "\n".join(missing)


def test_every_algorithm_is_documented_for_the_toolbox(topoclear_provider):
    missing = []
    for alg in topoclear_provider.algorithms():
        for what, value in (("help", alg.shortHelpString()), ("short description", alg.shortDescription()),
                            ("help URL", alg.helpUrl()), ("tags", alg.tags())):
            if not value:
                missing.append(f"{alg.id()}: no {what}")
        for d in alg.parameterDefinitions():
            if not d.description().strip():
                missing.append(f"{alg.id()}: parameter {d.name()} has no description")
            if d.description().count("[optional]") > 0:
                missing.append(f"{alg.id()}: parameter {d.name()} says [optional] itself (QGIS adds it)")
            if hasattr(d, "help") and not d.help().strip():  # the tooltip over the label (QGIS 3.16+)
                missing.append(f"{alg.id()}: parameter {d.name()} has no tooltip help")
    assert not missing, "\n".join(missing)


def test_the_documentation_page_is_up_to_date(topoclear_provider):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import make_docs
    finally:
        sys.path.pop(0)
    page = REPO_ROOT / "docs" / "index.html"
    assert page.is_file(), "run scripts/make_docs.py"
    assert page.read_text(encoding="utf-8") == make_docs.render(), \
        "docs/index.html is out of date: run QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_docs.py"
    for alg in topoclear_provider.algorithms():
        assert alg.helpUrl().endswith(f"docs/index.html#{alg.name()}")
        assert f'id="{alg.name()}"' in page.read_text(encoding="utf-8")
