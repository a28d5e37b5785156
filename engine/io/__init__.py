"""Raster input and output shared by every product line, free of ``qgis``.

* :mod:`.raster`: opening with clear errors, :class:`~.raster.Grid`, nodata and valid pixels,
  reads with halos, per-thread datasets;
* :mod:`.windows`: processing windows and :func:`~.windows.run_windows`, the one windowed loop;
* :mod:`.atomic`: outputs written beside their target and moved into place when complete;
* :mod:`.warp`: a raster read on another grid, window by window, and footprint coverage.
"""
