"""Creates the plugin's dock widgets in the QGIS main window."""
from __future__ import annotations

from typing import List


def create_docks(iface) -> List:
    """Dock widgets added to the main window (none yet for the terrain tools)."""
    return []
