"""TopoClear: terrain, cloud removal and snow mapping for Sentinel-2 in QGIS.

The package root is the QGIS plugin folder. Importing it (or its ``engine`` and ``models``
subpackages) never imports ``qgis``: only ``classFactory`` does, so the engine and the networks
can be used from plain Python scripts.
"""


def classFactory(iface):  # noqa: N802 (QGIS entry point name)
    """QGIS entry point. ``iface`` is None under ``qgis_process``."""
    from .plugin import TopoClearPlugin

    return TopoClearPlugin(iface)
