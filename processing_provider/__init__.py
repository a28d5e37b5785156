"""Processing provider ``topoclear``: thin QGIS wrappers around the engine."""
