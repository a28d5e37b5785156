"""Creates the plugin's dock widgets in the QGIS main window."""
from __future__ import annotations

from typing import List


def create_docks(iface) -> List:
    """Dock widgets added to the main window: the Snow cover and Cloud removal docks (right-hand side)."""
    from qgis.PyQt.QtCore import Qt

    from .snow_dock import SnowDock

    snow = SnowDock(iface)
    iface.addDockWidget(Qt.RightDockWidgetArea, snow)
    from .cloud_dock import CloudDock

    clouds = CloudDock(iface)
    iface.addDockWidget(Qt.RightDockWidgetArea, clouds)
    return [snow, clouds]
