"""Raster and terrain engine of TopoClear. Nothing in this package imports ``qgis``."""
