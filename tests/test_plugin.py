"""The plugin as QGIS loads it: metadata, classFactory, initGui/unload with an interface."""
from __future__ import annotations

import configparser

from conftest import REPO_ROOT, ensure_provider


def test_metadata_declares_the_processing_provider():
    meta = configparser.ConfigParser()
    meta.read(REPO_ROOT / "metadata.txt")
    general = meta["general"]
    assert general["name"] == "TopoClear"
    assert general["hasProcessingProvider"] == "yes"
    assert general["qgisMinimumVersion"] == "3.22"
    assert (REPO_ROOT / general["icon"]).is_file()


def test_plugin_registers_and_removes_its_provider(qgis_iface, qgis_processing):
    from qgis.core import QgsApplication

    import topoclear

    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("topoclear")
    if existing is not None:  # registered by another test's fixture: start clean
        registry.removeProvider(existing)
    plugin = topoclear.classFactory(qgis_iface)
    plugin.initGui()
    try:
        provider = registry.providerById("topoclear")
        assert provider is not None and provider.name() == "TopoClear"
        assert {a.id() for a in provider.algorithms()} >= {"topoclear:slope", "topoclear:terrainstack"}
        assert [d.objectName() for d in plugin.docks] and all(d.parent() is not None for d in plugin.docks)
    finally:
        plugin.unload()
    assert registry.providerById("topoclear") is None
    ensure_provider()  # leave the provider registered for the tests that follow
