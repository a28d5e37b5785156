"""Terrain products of a DEM: Horn slope, aspect and hillshade (:mod:`.derivatives`) and the terrain
stack aligned to a Sentinel-2 scene (:mod:`.stack`)."""
