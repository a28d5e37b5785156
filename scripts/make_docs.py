"""Write docs/index.html: the help of every TopoClear algorithm, where each algorithm's Help button leads.

The page is generated from the algorithms themselves (display name, short description, help text,
parameters and outputs), so it always says what the toolbox says. Run after changing an algorithm:

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_docs.py

``tests/test_docs.py`` fails when the page is out of date.
"""
from __future__ import annotations

import html
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "index.html"

STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; line-height: 1.45; color: #1f2328; }
h1 { color: #2b5d8a; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.6em; } code, tt { background: #f2f4f7; padding: 0 .2em; }
table { border-collapse: collapse; margin: .6em 0; } td, th { border: 1px solid #d0d7de; padding: .25em .5em;
vertical-align: top; text-align: left; } th { background: #f2f4f7; } .id { color: #57606a; font-size: 90%; }
nav li { margin: .1em 0; }
"""


def _parameter_kind(definition) -> str:
    kind = definition.type().replace("_", " ")
    options = getattr(definition, "options", None)
    if callable(options) and kind == "enum":
        return "choice: " + "; ".join(f"{i} = {html.escape(o)}" for i, o in enumerate(options()))
    return html.escape(kind)


def _default(definition) -> str:
    value = definition.defaultValue()
    return "" if value is None else html.escape(str(value))


def algorithm_section(alg) -> str:
    from qgis.core import QgsProcessingParameterDefinition

    rows = []
    for d in alg.parameterDefinitions():
        flags = []
        if d.flags() & QgsProcessingParameterDefinition.FlagOptional:
            flags.append("optional")
        if d.flags() & QgsProcessingParameterDefinition.FlagAdvanced:
            flags.append("advanced")
        rows.append(f"<tr><td><code>{d.name()}</code></td><td>{html.escape(d.description())}</td>"
                    f"<td>{_parameter_kind(d)}</td><td>{_default(d)}</td><td>{', '.join(flags)}</td></tr>")
    outputs = "".join(f"<tr><td><code>{o.name()}</code></td><td>{html.escape(o.description())}</td>"
                      f"<td>{html.escape(o.type())}</td></tr>" for o in alg.outputDefinitions())
    return (f'<h3 id="{alg.name()}">{html.escape(alg.displayName())} <span class="id">topoclear:{alg.name()}</span>'
            f'</h3>\n<p><i>{html.escape(alg.shortDescription())}</i></p>\n{alg.shortHelpString()}\n'
            "<h4>Parameters</h4>\n<table><tr><th>name</th><th>label</th><th>type</th><th>default</th><th></th></tr>"
            + "".join(rows) + "</table>\n<h4>Outputs</h4>\n<table><tr><th>name</th><th>label</th><th>type</th></tr>"
            + outputs + "</table>\n")


def render() -> str:
    from qgis.core import QgsApplication  # noqa: F401  (a QGIS application must exist)

    from topoclear.processing_provider.provider import TopoClearProvider

    provider = TopoClearProvider()
    provider.loadAlgorithms()
    algorithms = sorted(provider.algorithms(), key=lambda a: (a.group(), a.displayName()))
    groups = []
    for alg in algorithms:
        if alg.group() not in groups:
            groups.append(alg.group())
    nav = "".join(
        f"<li>{html.escape(g)}: " + ", ".join(f'<a href="#{a.name()}">{html.escape(a.displayName())}</a>'
                                              for a in algorithms if a.group() == g) + "</li>" for g in groups)
    body = "".join(f"<h2>{html.escape(g)}</h2>\n" + "".join(algorithm_section(a) for a in algorithms
                                                             if a.group() == g) for g in groups)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>TopoClear algorithms</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>TopoClear</h1>\n<p>Terrain, cloud removal and snow "
            "mapping for Sentinel-2 in QGIS. Every algorithm below is in the Processing toolbox under "
            "<b>TopoClear</b>, in the graphical modeler and in <code>qgis_process</code> as "
            "<code>topoclear:&lt;id&gt;</code>. The README in the plugin folder explains installation, the "
            "docks, the shipped models and their measured quality.</p>\n"
            f"<nav><ul>{nav}</ul></nav>\n{body}</body></html>\n")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    text = render()
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(text)} characters)")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
