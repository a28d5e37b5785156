"""The QGIS plugin object: registers the Processing provider and, in the desktop app, the docks."""
from __future__ import annotations

from qgis.core import QgsApplication

from .processing_provider.provider import TopoClearProvider


class TopoClearPlugin:
    """Created by ``classFactory``. ``iface`` is None under ``qgis_process``: only GUI code touches it."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.docks = []

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        if self.provider is None:
            self.provider = TopoClearProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()
        if self.iface is None:
            return
        from .ui.docks import create_docks

        self.docks = create_docks(self.iface)

    def unload(self):
        for dock in self.docks:
            self.iface.mainWindow().removeDockWidget(dock)
            dock.deleteLater()
        self.docks = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
