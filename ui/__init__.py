"""Docks, styles and icons of the TopoClear plugin (QGIS-facing code)."""
