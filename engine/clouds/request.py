"""What a cloud-removal run is asked to do: :class:`CloudRemovalRequest` and its :class:`InferenceOptions`.

One request carries everything a run needs: the input files, the model and weights, the cloud
mask, how bands and units are read, and how the network runs (tiles, device, mixed precision).
The removeclouds algorithm and the Cloud removal dock build it through one adapter
(:mod:`topoclear.qgis_common.cloud_choices`); scripts build it directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ..sentinel2.bands import Override
from ..sentinel2.metadata import SunAngles
from .methods.fill import FillParameters

#: What to do with a Sentinel-1 layer or DEM covering only part of the scene.
COVERAGE_POLICIES = ("refuse", "fill")


@dataclass
class InferenceOptions:
    """How to run a network over a scene (None: the model's default).

    tile / overlap: px (rounded up to the model's size multiple); mode: ``"blend"`` or ``"crop"``
    (:mod:`topoclear.engine.clouds.tiling`); batch_size: tiles per batch; device: ``"auto"``, ``"cpu"``,
    ``"cuda"``, ``"cuda:N"``; amp: ``"auto"`` (checked against float32), ``"on"``, ``"off"``;
    keep_clear: copy the input where the cloud mask says clear; policy: ``"refuse"`` or
    ``"fill"`` for auxiliary inputs covering only part of the scene; workers: reader threads;
    prefetch: batches read ahead.
    """

    tile: Optional[int] = None
    overlap: Optional[int] = None
    mode: Optional[str] = None
    batch_size: Optional[int] = None
    device: str = "auto"
    amp: str = "auto"
    keep_clear: bool = True
    policy: str = "refuse"
    workers: Optional[int] = None
    prefetch: int = 2


@dataclass
class CloudRemovalRequest:
    """One whole-scene cloud removal: inputs, model, cloud mask and how to run.

    Inputs:
        s2: the cloudy Sentinel-2 scene: a band stack, one band file of a product whose bands
            are separate files, or a product folder (.SAFE).
        output: the GeoTIFF to write.
        s1: Sentinel-1 raster (VV/VH, dB or linear), any grid.
        dem: DEM for the terrain stack, any grid; ``dem_band`` its band.
        metadata: Sentinel-2 metadata (MTD_TL.xml or .SAFE) for the sun angles that light the
            hillshade, or ``sun`` given directly.

    Method (used by :func:`~topoclear.engine.clouds.removal.run_cloud_removal`; a network given to
    :func:`~topoclear.engine.clouds.removal.remove_clouds` directly is used as it is):
        model: a method of :mod:`topoclear.engine.clouds.methods.catalogue`: ``"auto"`` (the default:
        the best held-out method for the inputs), ``"fill"`` or a network's registry name;
        weights: a .safetensors file with its model card (None: the shipped weights);
        allow_untrained: run random initial weights where none are shipped (benchmarks and tests
        only); model_options: builder options of an untrained network; model_title: the name used
        in logs and the report (default: the spec's title); fill: the fill's search distance and
        smoothing (the fill method, and the first pass of the networks that start from it).

    Outputs:
        output: the cloud-free GeoTIFF; observed: its companion raster of observed codes
        (:mod:`topoclear.engine.clouds.observed`; None: ``<output>_observed.tif``); creation_options:
        GDAL GeoTIFF creation options of both (None: DEFLATE with the predictor of the data type, tiled;
        :func:`topoclear.engine.clouds.writer.output_options`).

    Cloud mask:
        mask: a mask raster; mask_kind: a method of :mod:`topoclear.engine.clouds.masks.kinds`
        (``"auto"``: the given raster, SCL if its name says so, else the product's SCL band,
        else the pretrained detector when installed, else the DSen2-CR rules when the Level-1C
        bands are there, else none; see :mod:`topoclear.engine.clouds.masks.engine`); mask_band:
        the band of ``mask``.

    Reading:
        s2_overrides: explicit band choices ``{"B2": (file or None, band number)}``; s2_offset /
        s2_quantification: radiometry overriding the product's; s1_bands: explicit
        polarisation band numbers ``{"VV": 1, "VH": 2}``; s1_units: ``"auto"``, ``"db"`` or
        ``"linear"``.
    """

    s2: str
    output: str
    model: Optional[str] = "auto"
    weights: Optional[str] = None
    s1: Optional[str] = None
    dem: Optional[str] = None
    mask: Optional[str] = None
    mask_kind: str = "auto"
    mask_band: int = 1
    metadata: Optional[str] = None
    sun: Optional[SunAngles] = None
    s2_overrides: Optional[Dict[str, Override]] = None
    s2_offset: Optional[float] = None
    s2_quantification: Optional[float] = None
    s1_bands: Optional[Dict[str, int]] = None
    s1_units: str = "auto"
    dem_band: int = 1
    options: InferenceOptions = field(default_factory=InferenceOptions)
    allow_untrained: bool = False
    model_options: Optional[Dict[str, Any]] = None
    model_title: Optional[str] = None
    fill: FillParameters = field(default_factory=FillParameters)
    observed: Optional[str] = None
    creation_options: Optional[Dict[str, str]] = None
