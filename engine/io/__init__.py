"""Raster input and output shared by every product line, free of ``qgis``.

* :mod:`.raster`: opening with clear errors, :class:`~.raster.Grid`, nodata and valid pixels,
  reads with halos, per-thread datasets;
* :mod:`.windows`: processing windows and :func:`~.windows.run_windows`, the one windowed loop;
* :mod:`.atomic`: the output contract: files, GeoTIFFs and folders written beside their target,
  verified and moved into place when complete; free space checked first; names taken from inputs
  kept inside their folder; outputs that are inputs refused;
* :mod:`.warp`: a raster read on another grid, window by window, and footprint coverage.
"""
