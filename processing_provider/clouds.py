"""Cloud algorithms: whole-scene cloud removal and the evaluation of a result against a reference.

The algorithms declare their parameters and delegate: the method and mask choices come from the
method catalogue and the mask methods (:mod:`topoclear.qgis_common.cloud_choices`), and the parameters
become one engine request through :class:`~topoclear.qgis_common.cloud_choices.CloudChoices`,
the adapter the Cloud removal dock uses too. PyTorch is imported only when an algorithm runs;
without it the algorithms are listed but ``canExecute()`` says how to install it.
"""
from __future__ import annotations

import math

from qgis.core import (QgsField, QgsFields, QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString)
from qgis.PyQt.QtCore import QVariant

from ..qgis_common.cloud_choices import (AMP_CHOICES, BLEND_CHOICES, COVERAGE_CHOICES, S1_UNIT_CHOICES, CloudChoices,
                                        keys, mask_choices, model_choices, model_help)
from ..engine.clouds.methods.fill import DEFAULT_DISTANCE, DEFAULT_SMOOTHING, MAX_DISTANCE, MAX_SMOOTHING
from ..qgis_common.layers import display_name
from .base import TorchAlgorithm


def _labels(choices, with_tooltip: bool = False):
    return [f"{c.label}: {c.tooltip}" if with_tooltip and c.tooltip else c.label for c in choices]


def mask_help() -> str:
    """The cloud-mask methods of removal and what each does, as an HTML list."""
    return "<ul>" + "".join(f"<li><b>{c.label}</b>: {c.tooltip}</li>" for c in mask_choices("removal")) + "</ul>"


#: Tooltip help of the removeclouds parameters (the help panel explains them at length).
REMOVAL_HELP = {
    "INPUT": "The cloudy Sentinel-2 image: a band stack (13, 12 or 10 bands), or one band file of a product.",
    "SAFE": "Instead of a layer: a Sentinel-2 product folder (.SAFE), its bands found inside.",
    "S1": "Sentinel-1 backscatter (VV, VH; dB or linear) of about the same date, any grid; helps the networks.",
    "DEM": "A DEM (terrain derived on the fly) or the output of Terrain stack (used as it is), any grid.",
    "METADATA": "MTD_TL.xml or the .SAFE folder: the sun angles that light the hillshade.",
    "CLOUD_MASK": "A mask raster (0 clear, 2 shadow, other values cloud) or an SCL band.",
    "MASK_TYPE": "How clouds are found; Automatic: the mask raster, else SCL, else the pretrained detector.",
    "MODEL": "Automatic: the method with the best held-out score for the inputs given (the log says which).",
    "FILL_DISTANCE": "How far (px) the fill searches for clear pixels around a cloud.",
    "FILL_SMOOTHING": "3 x 3 smoothing passes over the filled pixels (0 = none).",
    "WEIGHTS": "Empty: the weights shipped with the plugin; else a .safetensors file with its .json card.",
    "DEVICE": "auto (the first CUDA GPU, else the CPU), cpu, cuda or cuda:N.",
    "TILE_SIZE": "Tile edge in px (0 = the model's default; smaller tiles need less memory).",
    "OVERLAP": "Overlap of neighbouring tiles in px (-1 = the model's default).",
    "BATCH_SIZE": "Tiles run at once (0 = default); shrinks by itself on GPU out-of-memory.",
    "KEEP_CLEAR": "Copy the input unchanged wherever the cloud mask says clear.",
    "COVERAGE": "What to do when Sentinel-1 or the DEM covers only part of the scene.",
    "BANDS": "The Sentinel-2 band of each input band, in order (e.g. B2,B3,B4,B8; - skips one).",
    "S1_BANDS": "The bands of VV and VH (e.g. VV=1,VH=2); empty = from descriptions or names.",
    "S1_UNITS": "Units of the Sentinel-1 values; Automatic decides from the values.",
    "DEM_BAND": "The DEM's elevation band (a terrain stack's bands are found by their descriptions).",
    "BLEND": "How neighbouring tiles are joined.",
    "AMP": "float16 on CUDA GPUs, checked against float32 when automatic.",
    "CREATION_OPTIONS": "GDAL GeoTIFF creation options separated by |; empty = DEFLATE with the type's predictor.",
    "OUTPUT": "A GeoTIFF (.tif) with the bands, grid and data type of the input; never an input.",
    "OBSERVED": "One byte per pixel: what was observed and what was rebuilt (default <output>_observed.tif).",
}


#: Tooltip help of the evaluate parameters.
EVALUATE_HELP = {
    "PREDICTION": "The cloud-free result to score (e.g. the output of Remove clouds).",
    "REFERENCE": "A clear image of the same place and bands; another grid is resampled by nearest neighbour.",
    "CLOUDY": "Optional: the cloudy input; gives the reproduction metrics on its clear pixels and, without a mask "
              "raster, the computed cloud mask.",
    "MASK": "Optional: a cloud mask raster (0 clear, 2 shadow, other values cloud) or an SCL band; scores inside "
            "and outside the clouds.",
    "MASK_TYPE": "How the mask's values are read, or the detector run on the cloudy input; Automatic: SCL when the "
                 "file name says SCL, else a mask raster.",
    "BANDS": "Band numbers or names to compare, e.g. B2,B3,B4,B8; empty = every band both rasters share.",
    "DN_OFFSET": "Added to integer DNs before dividing by 10000 (-1000 for processing baseline 04.00 and later).",
    "OUTPUT_TABLE": "A table of the metrics (one row per metric), opened in the project.",
    "OUTPUT_HTML": "Optional HTML report of the metrics.",
}


def _key(keys_list, index: int):
    return keys_list[index] if 0 <= index < len(keys_list) else None


# --------------------------------------------------------------------------------------------
# algorithms
# --------------------------------------------------------------------------------------------
class CloudAlgorithm(TorchAlgorithm):
    GROUP = "Clouds"
    GROUP_ID = "clouds"


class RemoveCloudsAlgorithm(CloudAlgorithm):
    NAME = "removeclouds"
    DISPLAY = "Remove clouds (Sentinel-2 + Sentinel-1 + DEM)"

    PARAMETER_HELP = REMOVAL_HELP

    def shortHelpString(self):  # noqa: N802
        from ..engine.clouds.observed import legend

        return (
            "<p>Rebuilds a cloud-free Sentinel-2 image of the <b>whole scene</b>: by the fill from the surroundings "
            "or a deep network, helped by a Sentinel-1 radar acquisition of (nearly) the same date and by the "
            "terrain of a DEM where given.</p>"
            "<p><b>Method</b> (default <i>Automatic</i>: for the inputs given, the method whose shipped card records "
            "the best held-out score, the fill included; the log says which and why):" + model_help() +
            "Without a Sentinel-1 layer the optical-only variant of a network (trained without SAR) runs and the log "
            "says so; models that need terrain require a DEM. <i>Fill search distance</i> and <i>smoothing "
            "passes</i> set the fill (GDAL FillNodata), which the networks 'from the fill' start from; the scene "
            "is filled in windows with a halo as wide as the search distance, so the result does not depend on the "
            "windows.</p>"
            "<p><b>Sentinel-2</b>: a band stack (13-band L1C, 12-band L2A, 10-band; named bands win), one band file "
            "of a product whose bands are separate files, or a product folder (.SAFE). <i>Sentinel-2 band order</i> "
            "(advanced) overrides the detection, e.g. <tt>B2,B3,B4,B8</tt>. 20 m bands of separate files are "
            "brought to 10 m "
            "by nearest neighbour.</p>"
            "<p><b>Sentinel-1</b> (VV, VH in dB or linear, detected or chosen) and the <b>DEM</b> may be in any CRS, "
            "resolution and extent: they are resampled bilinearly onto the Sentinel-2 grid window by window; the "
            "terrain stack (elevation, slope, aspect, hillshade) is derived from the DEM on the fly, the hillshade "
            "lit by the scene's sun when its metadata (MTD_TL.xml or .SAFE) is given. A <b>terrain stack</b> (the "
            "output of <i>Terrain stack</i>, recognised by its band descriptions) can be given for the DEM: its "
            "bands are then used as they are, not derived again (the log says so). A layer that does not cover "
            "the scene is an error; partial coverage is refused or filled, as chosen.</p>"
            "<p><b>Cloud mask</b> (the same engine as <i>Cloud and shadow mask</i>):" + mask_help() +
            "<i>Automatic</i> takes the mask raster when one is given (as SCL when its name says SCL), else the "
            "product's SCL band, else the "
            "pretrained detector (ukis-csmask; it keeps snow and bright ground clear), else the DSen2-CR rules on "
            "Level-1C bands; the log says which and why. A mask raster is read as 0 clear, 2 shadow, other values "
            "cloud, its nodata no data, so the output of <i>Cloud and shadow mask</i> can be given as it is. "
            "The detector needs onnxruntime and ukis-csmask (Plugins &gt; TopoClear &gt; Install dependencies...). "
            "With <i>keep clear pixels</i>, every pixel the mask calls clear is copied from the input "
            "unchanged.</p>"
            "<p><b>Weights</b>: empty = the weights shipped with the plugin (models/weights); or a .safetensors file "
            "with its .json model card, which must match the model and the bands.</p>"
            "<p><b>Device</b>: <tt>auto</tt> (first CUDA GPU, else CPU), <tt>cpu</tt>, <tt>cuda</tt> or "
            "<tt>cuda:N</tt>. The scene is processed in overlapping tiles (tile size, overlap and batch: 0 / -1 = "
            "the model's defaults, which make the result independent of the tiling); on GPU out-of-memory the batch, "
            "then the tile, shrink automatically.</p>"
            "<p><b>Output</b>: a GeoTIFF with the bands, grid, data type and nodata of the input; bands the model "
            "does not predict are copied; band descriptions say which is which. It is tiled and compressed "
            "(DEFLATE, with the predictor of its data type); <i>Additional creation options</i> (advanced) "
            "replace the compression with GDAL GeoTIFF creation options separated by <tt>|</tt>, e.g. "
            "<tt>COMPRESS=ZSTD|ZLEVEL=9</tt> or <tt>COMPRESS=NONE</tt>. <b>What was observed</b> "
            "(<tt>OBSERVED</tt>, default <tt>&lt;output&gt;_observed.tif</tt>): one byte per pixel, " + legend() +
            ". The log warns when a large share of the scene had no information.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        models, masks = model_choices(), mask_choices("removal")
        self.model_keys, self.mask_keys = keys(models), keys(masks)
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Sentinel-2 image (cloudy)", optional=True))
        self.addParameter(QgsProcessingParameterFile("SAFE", "...or a Sentinel-2 product folder (.SAFE)",
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("S1", "Sentinel-1 image (VV, VH)", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "DEM", "DEM or terrain stack", optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "METADATA", "Sentinel-2 metadata (sun angles)", optional=True,
            fileFilter="Sentinel-2 metadata (MTD_TL.xml MTD_MSIL1C.xml MTD_MSIL2A.xml);;All files (*)"))
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUD_MASK", "Cloud mask raster", optional=True))
        self.addParameter(QgsProcessingParameterEnum("MASK_TYPE", "Cloud mask", _labels(masks), defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum("MODEL", "Method", _labels(models), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            "FILL_DISTANCE", "Fill search distance (px)",
            QgsProcessingParameterNumber.Integer, DEFAULT_DISTANCE, False, 1, MAX_DISTANCE))
        self.addParameter(QgsProcessingParameterNumber(
            "FILL_SMOOTHING", "Fill smoothing passes",
            QgsProcessingParameterNumber.Integer, DEFAULT_SMOOTHING, False, 0, MAX_SMOOTHING))
        self.addParameter(QgsProcessingParameterFile(
            "WEIGHTS", "Weights file (default: the shipped weights)", optional=True,
            fileFilter="Model weights (*.safetensors);;All files (*)"))
        self._add_tiling_parameters()
        self.addParameter(QgsProcessingParameterBoolean("KEEP_CLEAR", "Keep clear pixels as they are", True))
        self.addParameter(QgsProcessingParameterEnum("COVERAGE", "Sentinel-1 / DEM covering only part of the scene",
                                                     _labels(COVERAGE_CHOICES), defaultValue=0))
        self._add_reading_parameters()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Cloud-free image"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OBSERVED", "What was observed (codes)", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputString("DEVICE_USED", "Device used"))
        self.addOutput(QgsProcessingOutputString("MODEL_USED", "Model used"))
        self.addOutput(QgsProcessingOutputNumber("CLOUD_PERCENT", "Cloud/shadow (% of the valid pixels)"))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", "Run time (s)"))
        self.addOutput(QgsProcessingOutputNumber("NO_INFORMATION_PERCENT",
                                                 "No information (% of the valid pixels)"))

    def _add_tiling_parameters(self) -> None:
        self.addParameter(self.advanced(QgsProcessingParameterString("DEVICE", "Device (auto, cpu, cuda, cuda:N)",
                                                                     "auto")))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "TILE_SIZE", "Tile size (px; 0 = the model's default)", QgsProcessingParameterNumber.Integer, 0, False, 0,
            16384)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "OVERLAP", "Tile overlap (px; -1 = the model's default)", QgsProcessingParameterNumber.Integer, -1, False,
            -1, 4096)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "BATCH_SIZE", "Tiles per batch (0 = default)", QgsProcessingParameterNumber.Integer, 0, False, 0, 1024)))

    def _add_reading_parameters(self) -> None:
        self.addParameter(self.advanced(QgsProcessingParameterString(
            "BANDS", "Sentinel-2 band order (empty = detected)", "", optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterString(
            "S1_BANDS", "Sentinel-1 bands (e.g. VV=1,VH=2)", "", optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("S1_UNITS", "Sentinel-1 units",
                                                                   _labels(S1_UNIT_CHOICES), defaultValue=0)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "DEM_BAND", "DEM band", QgsProcessingParameterNumber.Integer, 1, False, 1, 1000)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("BLEND", "Tile borders", _labels(BLEND_CHOICES),
                                                                   defaultValue=0)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("AMP", "Mixed precision", _labels(AMP_CHOICES),
                                                                   defaultValue=0)))
        self.addParameter(self.advanced(QgsProcessingParameterString(
            "CREATION_OPTIONS", "Additional creation options",
            "", optional=True)))

    def choices(self, parameters, context) -> CloudChoices:
        """What the parameters choose, for :meth:`CloudChoices.request`."""
        def enum(name, options):
            return _key(options, self.parameterAsEnum(parameters, name, context))

        def layer(name):
            return self.parameterAsRasterLayer(parameters, name, context)

        return CloudChoices(
            s2=layer("INPUT"), safe=self.parameterAsFile(parameters, "SAFE", context), s1=layer("S1"),
            dem=layer("DEM"), metadata=self.parameterAsFile(parameters, "METADATA", context),
            mask=layer("CLOUD_MASK"), mask_method=enum("MASK_TYPE", self.mask_keys), model=enum("MODEL", self.model_keys),
            weights=self.parameterAsFile(parameters, "WEIGHTS", context),
            device=self.parameterAsString(parameters, "DEVICE", context),
            tile_size=self.parameterAsInt(parameters, "TILE_SIZE", context),
            overlap=self.parameterAsInt(parameters, "OVERLAP", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            keep_clear=self.parameterAsBoolean(parameters, "KEEP_CLEAR", context),
            coverage=enum("COVERAGE", keys(COVERAGE_CHOICES)), bands=self.parameterAsString(parameters, "BANDS", context),
            s1_bands=self.parameterAsString(parameters, "S1_BANDS", context),
            s1_units=enum("S1_UNITS", keys(S1_UNIT_CHOICES)),
            dem_band=self.parameterAsInt(parameters, "DEM_BAND", context), blend=enum("BLEND", keys(BLEND_CHOICES)),
            amp=enum("AMP", keys(AMP_CHOICES)), output=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            fill_distance=self.parameterAsInt(parameters, "FILL_DISTANCE", context),
            fill_smoothing=self.parameterAsInt(parameters, "FILL_SMOOTHING", context),
            observed=self._observed(parameters, context),
            creation_options=self.parameterAsString(parameters, "CREATION_OPTIONS", context) or "")

    def input_name(self, parameters, context) -> str:
        """How the user knows the Sentinel-2 input: its layer's name, or the product folder's."""
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if layer is not None:
            return display_name(layer)
        return display_name(None, self.parameterAsFile(parameters, "SAFE", context))

    def _observed(self, parameters, context) -> str:
        value = parameters.get("OBSERVED")
        if value is None or value == "" or (isinstance(value, str) and value.upper() == "SKIP"):
            return ""
        return self.parameterAsOutputLayer(parameters, "OBSERVED", context) or ""

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..engine.clouds.removal import run_cloud_removal

        choices = self.choices(parameters, context)
        request = self.run_engine(choices.request, feedback)
        for note in choices.notes():
            feedback.pushInfo(note)
        report = self.run_engine(lambda: run_cloud_removal(request, self.monitor(feedback)), feedback)
        for line in report.summary().splitlines():
            feedback.pushInfo(line)
        if report.no_information_warning:
            feedback.reportError(report.no_information_warning, fatalError=False)
        name = self.input_name(parameters, context)
        self.style_output(context, request.output, "sentinel2", f"Cloud-free {name}" if name else "Cloud-free image")
        if report.observed:
            self.style_output(context, report.observed, "observed", f"Observed {name}" if name else "Observed")
        counts = report.observed_counts
        return {"OUTPUT": request.output, "OBSERVED": report.observed, "DEVICE_USED": report.device,
                "MODEL_USED": report.model, "CLOUD_PERCENT": report.cloud_percent, "SECONDS": report.seconds,
                "NO_INFORMATION_PERCENT": 100.0 * counts.share(5) if counts is not None else None}


class EvaluateAlgorithm(CloudAlgorithm):
    NAME = "evaluate"
    DISPLAY = "Evaluate cloud removal against a reference"

    PARAMETER_HELP = EVALUATE_HELP

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
            "cloudy input too: MAE and SAM against the cloudy input on clear pixels (reproduction). <i>Bands to "
            "compare</i> (advanced): band numbers or names, e.g. <tt>B2,B3,B4,B8</tt>.</p>"
            "<p><b>Cloud mask values</b>: <i>Automatic</i> reads the mask as SCL (classes 3, 8, 9, 10) when its file "
            "name says SCL, else as 0 clear, 2 shadow, other values cloud and its nodata no data (the output of "
            "<i>Cloud and shadow mask</i> reads as written); without a mask raster it computes the mask from the "
            "cloudy input (its SCL band, else the pretrained detector, else the DSen2-CR rules). <i>Pretrained "
            "detector</i> always computes it from the cloudy input.</p>"
            "<p><b>Outputs</b>: a table (metric, region, value, unit) and an HTML report with the cloudy, predicted "
            "and reference quick-looks side by side (true colour, same stretch).</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", "Prediction (cloud-free result)"))
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference (clear image)"))
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUDY", "Cloudy input", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("MASK", "Cloud mask", optional=True))
        masks = mask_choices("evaluate")
        self.mask_keys = keys(masks)
        self.addParameter(QgsProcessingParameterEnum("MASK_TYPE", "Cloud mask values", _labels(masks),
                                                     defaultValue=0))
        self.addParameter(self.advanced(QgsProcessingParameterString(
            "BANDS", "Bands to compare (empty = all)", "", optional=True)))
        self.addParameter(self.advanced(self.number("DN_OFFSET", "DN offset of integer rasters", 0.0,
                                                    -10000.0, 10000.0)))
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
            prediction, reference, cloudy, mask, _key(self.mask_keys, self.parameterAsEnum(parameters, "MASK_TYPE",
                                                                                          context)),
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
