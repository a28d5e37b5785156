"""Cloud algorithms: whole-scene cloud removal and the evaluation of a result against a reference.

PyTorch is imported only when an algorithm runs; without it the algorithms are listed but
``canExecute()`` says how to install it.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

from qgis.core import (QgsField, QgsFields, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingOutputString, QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString)
from qgis.PyQt.QtCore import QVariant

from .base import TorchAlgorithm

MODEL_KEYS = ["crt_unet", "unet", "dsen2cr", "cr_gan", "sar2opt_gan"]
MODEL_LABELS = [
    "CRT-UNet: Sentinel-2 (10 bands) + Sentinel-1 + DEM terrain (mountains)",
    "UNet: Sentinel-2 (10 bands) + Sentinel-1 (optical-only variant without Sentinel-1)",
    "DSen2-CR: Sentinel-2 (13 L1C bands) + Sentinel-1, residual (optical-only variant without Sentinel-1)",
    "Cloud-removal GAN: Sentinel-2 RGB + Sentinel-1 VV (optical-only variant without Sentinel-1)",
    "SAR-to-optical GAN: Sentinel-1 VV only, paints RGB under the clouds",
]
MASK_KEYS = ["auto", "scl", "raster", "computed", "none"]
MASK_LABELS = ["Automatic: the mask raster below (SCL if its name says so), else the product's SCL band, else the "
               "DSen2-CR rules on Level-1C bands, else none",
               "SCL scene classification raster (classes 3 shadow, 8, 9 cloud, 10 cirrus)",
               "Cloud mask raster: non-zero = cloud or shadow",
               "Computed from the Level-1C bands (DSen2-CR rules: cloud score and Zhai shadows)",
               "No cloud mask (every pixel is predicted)"]
COVERAGE_KEYS = ["refuse", "fill"]
COVERAGE_LABELS = ["Refuse: error unless Sentinel-1 and the DEM cover the whole scene",
                   "Fill the uncovered part with neutral values and go on"]
UNITS_KEYS = ["auto", "db", "linear"]
UNITS_LABELS = ["Automatic (from the values)", "dB", "Linear sigma0"]
BLEND_KEYS = [None, "blend", "crop"]
BLEND_LABELS = ["Automatic (crop exactly where the receptive field is known, else blend)",
                "Blend overlaps with cosine ramps", "Crop tile margins (keep each tile's centre)"]
AMP_KEYS = ["auto", "off", "on"]
AMP_LABELS = ["Automatic (CUDA: float16 when within tolerance of float32)", "Off (float32)", "On (CUDA float16)"]
EVAL_MASK_KEYS = ["auto", "scl", "raster"]
EVAL_MASK_LABELS = ["Automatic (SCL if the file name says so, else non-zero = cloud)", "SCL classes 3, 8, 9, 10",
                    "Non-zero = cloud or shadow"]


def _model_help() -> str:
    from ..engine.clouds.removal import describe_needs

    items = []
    for key, label in zip(MODEL_KEYS, MODEL_LABELS):
        try:
            needs = describe_needs(key)
        except Exception:  # registry needs torch
            needs = label.split(": ", 1)[1]
        items.append(f"<li><b>{label.split(':')[0]}</b> ({key}): needs {needs}</li>")
    return "<ul>" + "".join(items) + "</ul>"


# --------------------------------------------------------------------------------------------
# algorithms
# --------------------------------------------------------------------------------------------
class CloudAlgorithm(TorchAlgorithm):
    GROUP = "Clouds"
    GROUP_ID = "clouds"


def parse_band_list(text: str):
    """``"B2,B3,B4"`` -> overrides {name: (None, index)} in that order of the input's bands."""
    from ..engine.sentinel2.bands import canonical_band

    overrides = {}
    for index, item in enumerate([t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()], start=1):
        if item in ("-", "_", "x", "skip"):
            continue
        name = canonical_band(item)
        if name is None:
            raise QgsProcessingException(f"Band order: {item!r} is not a Sentinel-2 band name (B1..B12, B8A; "
                                         "use - for a band to ignore)")
        overrides[name] = (None, index)
    return overrides


def parse_s1_bands(text: str) -> Optional[Dict[str, int]]:
    """``"VV=1,VH=2"`` or ``"1,2"`` (VV, VH) -> {"VV": 1, "VH": 2}."""
    if not text or not str(text).strip():
        return None
    out = {}
    items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    for k, item in enumerate(items):
        if "=" in item:
            pol, number = item.split("=", 1)
        else:
            pol, number = ("VV", "VH")[k] if k < 2 else "", item
        try:
            out[pol.strip().upper()] = int(number)
        except ValueError:
            raise QgsProcessingException(f"Sentinel-1 bands: {item!r} is not POL=number (e.g. VV=1,VH=2)") from None
    return out


class RemoveCloudsAlgorithm(CloudAlgorithm):
    NAME = "removeclouds"
    DISPLAY = "Remove clouds (Sentinel-2 + Sentinel-1 + DEM)"

    def shortHelpString(self):  # noqa: N802
        return (
            "<p>Rebuilds a cloud-free Sentinel-2 image of the <b>whole scene</b> with a deep network, helped by a "
            "Sentinel-1 radar acquisition of (nearly) the same date and by the terrain of a DEM.</p>"
            "<p><b>Models</b>:" + _model_help() + "Without a Sentinel-1 layer the optical-only variant of the "
            "model (trained without SAR) is chosen automatically and the log says so; models that need terrain "
            "require a DEM.</p>"
            "<p><b>Sentinel-2</b>: a band stack (13-band L1C, 12-band L2A, 10-band; named bands win), one band file "
            "of a product whose bands are separate files, or a product folder (.SAFE). <i>Band order</i> (advanced) "
            "overrides the detection, e.g. <tt>B2,B3,B4,B8</tt>. 20 m bands of separate files are brought to 10 m "
            "by nearest neighbour.</p>"
            "<p><b>Sentinel-1</b> (VV, VH in dB or linear, detected or chosen) and the <b>DEM</b> may be in any CRS, "
            "resolution and extent: they are resampled bilinearly onto the Sentinel-2 grid window by window; the "
            "terrain stack (elevation, slope, aspect, hillshade) is derived from the DEM on the fly, the hillshade "
            "lit by the scene's sun when its metadata (MTD_TL.xml or .SAFE) is given. A layer that does not cover "
            "the scene is an error; partial coverage is refused or filled, as chosen.</p>"
            "<p><b>Cloud mask</b>: an SCL band, a mask raster, or computed with the DSen2-CR rules. With <i>keep "
            "clear pixels</i>, every pixel the mask calls clear is copied from the input unchanged.</p>"
            "<p><b>Weights</b>: empty = the weights shipped with the plugin (models/weights); or a .safetensors file "
            "with its .json model card, which must match the model and the bands.</p>"
            "<p><b>Device</b>: <tt>auto</tt> (first CUDA GPU, else CPU), <tt>cpu</tt>, <tt>cuda</tt> or "
            "<tt>cuda:N</tt>. The scene is processed in overlapping tiles (tile size, overlap and batch: 0 / -1 = "
            "the model's defaults, which make the result independent of the tiling); on GPU out-of-memory the batch, "
            "then the tile, shrink automatically.</p>"
            "<p><b>Output</b>: a GeoTIFF with the bands, grid, data type and nodata of the input; bands the model "
            "does not predict are copied; band descriptions say which is which.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Sentinel-2 image (cloudy)", optional=True))
        self.addParameter(QgsProcessingParameterFile("SAFE", "...or a Sentinel-2 product folder (.SAFE)",
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("S1", "Sentinel-1 image (VV, VH) [optional]",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM [optional; needed by CRT-UNet]",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "METADATA", "Sentinel-2 metadata for the sun angles (MTD_TL.xml or .SAFE) [optional]", optional=True,
            fileFilter="Sentinel-2 metadata (MTD_TL.xml MTD_MSIL1C.xml MTD_MSIL2A.xml);;All files (*)"))
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUD_MASK", "Cloud mask raster [optional]",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterEnum("MASK_TYPE", "Cloud mask", MASK_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum("MODEL", "Model", MODEL_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            "WEIGHTS", "Weights file [optional; default: the shipped weights]", optional=True,
            fileFilter="Model weights (*.safetensors);;All files (*)"))
        self.addParameter(QgsProcessingParameterString("DEVICE", "Device (auto, cpu, cuda, cuda:N)", "auto"))
        self.addParameter(QgsProcessingParameterNumber("TILE_SIZE", "Tile size (px; 0 = the model's default)",
                                                       QgsProcessingParameterNumber.Integer, 0, False, 0, 16384))
        self.addParameter(QgsProcessingParameterNumber("OVERLAP", "Tile overlap (px; -1 = the model's default)",
                                                       QgsProcessingParameterNumber.Integer, -1, False, -1, 4096))
        self.addParameter(QgsProcessingParameterNumber("BATCH_SIZE", "Tiles per batch (0 = default)",
                                                       QgsProcessingParameterNumber.Integer, 0, False, 0, 1024))
        self.addParameter(QgsProcessingParameterBoolean("KEEP_CLEAR", "Keep clear pixels (copy the input where "
                                                                      "the mask says clear)", True))
        self.addParameter(QgsProcessingParameterEnum("COVERAGE", "Sentinel-1 / DEM covering only part of the scene",
                                                     COVERAGE_LABELS, defaultValue=0))
        self.addParameter(self.advanced(QgsProcessingParameterString(
            "BANDS", "Band order of the Sentinel-2 image (e.g. B2,B3,B4,B8; empty = detected)", "", optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterString(
            "S1_BANDS", "Sentinel-1 band numbers (e.g. VV=1,VH=2; empty = detected)", "", optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("S1_UNITS", "Sentinel-1 units", UNITS_LABELS,
                                                                   defaultValue=0)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "DEM_BAND", "DEM band", QgsProcessingParameterNumber.Integer, 1, False, 1, 1000)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("BLEND", "Tile borders", BLEND_LABELS,
                                                                   defaultValue=0)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("AMP", "Mixed precision", AMP_LABELS,
                                                                   defaultValue=0)))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Cloud-free image"))
        self.addOutput(QgsProcessingOutputString("DEVICE_USED", "Device used"))
        self.addOutput(QgsProcessingOutputString("MODEL_USED", "Model used"))
        self.addOutput(QgsProcessingOutputNumber("CLOUD_PERCENT", "Cloud/shadow (% of the valid pixels)"))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", "Run time (s)"))

    def engine_arguments(self, parameters, context) -> dict:
        """The keyword arguments of :func:`topoclear.engine.clouds.removal.run_cloud_removal` from the parameters."""
        from ..engine.clouds.removal import InferenceOptions

        source = self.raster_file(parameters, "INPUT", context, required=False)
        safe = self.parameterAsFile(parameters, "SAFE", context)
        if not source and not safe:
            raise QgsProcessingException("INPUT: choose a Sentinel-2 layer or a product folder")
        tile = self.parameterAsInt(parameters, "TILE_SIZE", context)
        overlap = self.parameterAsInt(parameters, "OVERLAP", context)
        batch = self.parameterAsInt(parameters, "BATCH_SIZE", context)
        options = InferenceOptions(
            tile=tile or None, overlap=None if overlap < 0 else overlap,
            mode=BLEND_KEYS[self.parameterAsEnum(parameters, "BLEND", context)], batch_size=batch or None,
            device=self.parameterAsString(parameters, "DEVICE", context) or "auto",
            amp=AMP_KEYS[self.parameterAsEnum(parameters, "AMP", context)],
            keep_clear=self.parameterAsBoolean(parameters, "KEEP_CLEAR", context),
            policy=COVERAGE_KEYS[self.parameterAsEnum(parameters, "COVERAGE", context)])
        bands = self.parameterAsString(parameters, "BANDS", context)
        return dict(
            s2=safe or source, model=MODEL_KEYS[self.parameterAsEnum(parameters, "MODEL", context)],
            weights=self.parameterAsFile(parameters, "WEIGHTS", context) or None,
            s1=self.raster_file(parameters, "S1", context, required=False),
            dem=self.raster_file(parameters, "DEM", context, required=False),
            mask=self.raster_file(parameters, "CLOUD_MASK", context, required=False),
            mask_kind=MASK_KEYS[self.parameterAsEnum(parameters, "MASK_TYPE", context)],
            metadata=self.parameterAsFile(parameters, "METADATA", context) or None,
            s2_overrides=parse_band_list(bands) if bands and bands.strip() else None,
            s1_bands=parse_s1_bands(self.parameterAsString(parameters, "S1_BANDS", context)),
            s1_units=UNITS_KEYS[self.parameterAsEnum(parameters, "S1_UNITS", context)],
            dem_band=self.parameterAsInt(parameters, "DEM_BAND", context) or 1, options=options)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..engine.clouds.removal import run_cloud_removal

        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if not output.lower().endswith((".tif", ".tiff")):
            raise QgsProcessingException(f"OUTPUT: the cloud-free image is written as GeoTIFF; got {output}")
        kwargs = self.engine_arguments(parameters, context)
        if kwargs["mask"] and kwargs["mask_kind"] in ("computed", "none"):
            feedback.pushInfo("A cloud mask raster was given but the cloud mask choice does not use it.")
            kwargs["mask"] = None
        report = self.run_engine(lambda: run_cloud_removal(output=output, monitor=self.monitor(feedback), **kwargs),
                                 feedback)
        for line in report.summary().splitlines():
            feedback.pushInfo(line)
        self.style_output(context, output, "sentinel2")
        cloud = (100.0 * report.cloud_pixels / report.valid_pixels
                 if report.cloud_pixels is not None and report.valid_pixels else None)
        return {"OUTPUT": output, "DEVICE_USED": report.device, "MODEL_USED": report.model,
                "CLOUD_PERCENT": cloud, "SECONDS": report.seconds}


class EvaluateAlgorithm(CloudAlgorithm):
    NAME = "evaluate"
    DISPLAY = "Evaluate cloud removal against a reference"

    def shortHelpString(self):  # noqa: N802
        return (
            "<p>Compares a cloud-removal <b>prediction</b> with a cloud-free <b>reference</b> image of the same "
            "place (same grid; another grid is resampled by nearest neighbour).</p>"
            "<p>Values are reflectance in [0, 1]: integer rasters are divided by 10000 after the DN offset "
            "(-1000 for processing baseline 04.00 and later), floating-point rasters are taken as reflectance; "
            "both are clipped to [0, 1]. Pixels that are nodata (DN 0) in either are left out.</p>"
            "<p><b>Metrics</b>: MAE and RMSE (reflectance), PSNR (dB, 20 log10(1/RMSE)), SSIM (unitless, 11x11 "
            "Gaussian window, sigma 1.5), SAM (mean spectral angle, <b>degrees</b>). With a cloud mask: cloud "
            "fraction, PSNR inside and outside the mask, MAE and SAM inside the mask (reconstruction); with the "
            "cloudy input too: MAE and SAM against the cloudy input on clear pixels (reproduction).</p>"
            "<p><b>Outputs</b>: a table (metric, region, value, unit) and an HTML report with the cloudy, predicted "
            "and reference quick-looks side by side (true colour, same stretch).</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", "Prediction (cloud-free result)"))
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference (clear image)"))
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUDY", "Cloudy input [optional]", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("MASK", "Cloud mask [optional]", optional=True))
        self.addParameter(QgsProcessingParameterEnum("MASK_TYPE", "Cloud mask values", EVAL_MASK_LABELS,
                                                     defaultValue=0))
        self.addParameter(self.advanced(QgsProcessingParameterString(
            "BANDS", "Bands to compare (numbers or names, e.g. B2,B3,B4,B8; empty = all)", "", optional=True)))
        self.addParameter(self.advanced(self.number("DN_OFFSET", "DN offset of integer rasters", 0.0)))
        self.addParameter(self.table_output("OUTPUT_TABLE", "Metrics"))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_HTML", "Report", "HTML files (*.html)",
                                                                optional=True))
        for key, label in (("MAE", "MAE (reflectance)"), ("RMSE", "RMSE (reflectance)"), ("PSNR", "PSNR (dB)"),
                           ("SSIM", "SSIM"), ("SAM", "SAM (degrees)")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..engine.clouds.evaluation import evaluate_rasters, write_report

        prediction = self.raster_file(parameters, "PREDICTION", context)
        reference = self.raster_file(parameters, "REFERENCE", context)
        cloudy = self.raster_file(parameters, "CLOUDY", context, required=False)
        mask = self.raster_file(parameters, "MASK", context, required=False)
        offset = self.parameterAsDouble(parameters, "DN_OFFSET", context)
        evaluation = self.run_engine(lambda: evaluate_rasters(
            prediction, reference, cloudy, mask, EVAL_MASK_KEYS[self.parameterAsEnum(parameters, "MASK_TYPE", context)],
            bands=self.parameterAsString(parameters, "BANDS", context) or None, offset=offset,
            monitor=self.monitor(feedback)), feedback)
        fields = QgsFields()
        for name, kind in (("key", QVariant.String), ("metric", QVariant.String), ("region", QVariant.String),
                           ("value", QVariant.Double), ("unit", QVariant.String)):
            fields.append(QgsField(name, kind))
        rows = ([key, label, region, None if math.isnan(value) else value, unit]
                for key, label, value, unit, region in evaluation.rows())
        results = {"OUTPUT_TABLE": self.write_table(parameters, "OUTPUT_TABLE", context, fields, rows)}
        for line in evaluation.summary().splitlines() + evaluation.notes:
            feedback.pushInfo(line)
        results.update({k.upper(): evaluation.values.get(k) for k in ("mae", "rmse", "psnr", "ssim", "sam")})
        html_path = self.parameterAsFileOutput(parameters, "OUTPUT_HTML", context)
        if html_path:
            self.run_engine(lambda: write_report(html_path, evaluation, prediction, reference, cloudy,
                                                 offset=offset), feedback)
            results["OUTPUT_HTML"] = html_path
        return results
