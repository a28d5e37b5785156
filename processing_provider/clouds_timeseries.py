"""topoclear:removeclouds_timeseries: cloud removal from several dates (time-series fill, CA-MTCR, automatic).

The algorithm declares its parameters and delegates to one engine request
(:class:`topoclear.engine.clouds.timeseries.TimeSeriesRequest`); the methods come from
:mod:`topoclear.engine.clouds.timeseries_methods`, the cloud-mask methods from the mask engine's
catalogue. Layers become their files through :func:`topoclear.qgis_common.layers.file_behind_layer`.
"""
from __future__ import annotations

from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterEnum, QgsProcessingParameterFile, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString)

from ..qgis_common.cloud_choices import keys, mask_choices
from ..qgis_common.layers import LayerError, display_name, file_behind_layer
from .base import TorchAlgorithm


def _labels(choices):
    return [f"{c.label}: {c.tooltip}" if c.tooltip else c.label for c in choices]


def series_method_choices():
    from ..engine.clouds.timeseries_methods import SERIES_METHODS
    from ..qgis_common.cloud_choices import Choice

    return [Choice(m.key, m.title, m.description) for m in SERIES_METHODS]


#: Tooltip help of the time-series removal's parameters.
PARAMETER_HELP = {
    "INPUT": "The Sentinel-2 image to clear (the target date): a band stack or one band file of a product.",
    "AUX": "Other Sentinel-2 dates of the same place, same bands, any order and grid (aligned onto the target).",
    "DATES": "YYYY-MM-DD of the target, then of each other date in the order above, comma-separated; empty = "
             "from the metadata or the file names.",
    "METHOD": "Automatic: the best held-out score in the shipped cards (the log says which); the time-series fill "
              "takes the nearest clear date, radiometrically matched; CA-MTCR is the network.",
    "S1": "Optional Sentinel-1 images (VV, VH), matched to the Sentinel-2 dates by their own dates.",
    "DEM": "Not read by these methods; accepted so that models chain like Remove clouds.",
    "MASK_TYPE": "How the clouds of every date are found; Automatic: the mask raster, else SCL, else the "
                 "pretrained detector, else the rules.",
    "CLOUD_MASK": "Optional cloud mask raster (0 clear, 2 shadow, other values cloud) or SCL band of the target.",
    "CLOUD_MASKS": "Optional cloud mask rasters of the other dates, matched to them by date.",
    "MAX_DAYS": "Dates further than this from the target are not used (0 = any date).",
    "WEIGHTS": "Empty: the shipped CA-MTCR weights; else a .safetensors file with its .json card.",
    "DEVICE": "auto (the first CUDA GPU, else the CPU), cpu, cuda or cuda:N.",
    "WINDOW": "Window edge (px) of the time-series fill; memory grows with it, the result does not change.",
    "TILE_SIZE": "Tile edge (px, a multiple of 4) of CA-MTCR; smaller tiles need less memory.",
    "FILL_DISTANCE": "How far (px) the single-image fill searches for clear pixels where no date is clear.",
    "OUTPUT": "A GeoTIFF (.tif) with the bands, grid, data type and nodata of the target; never an input.",
    "SOURCE": "One byte per pixel: 0 observed, k filled from the k-th other date, 253 CA-MTCR, 254 single-image "
              "fill, 255 nodata.",
    "OBSERVED": "One byte per pixel: what was observed and what was rebuilt (default <output>_observed.tif).",
}


class RemoveCloudsTimeSeriesAlgorithm(TorchAlgorithm):
    NAME = "removeclouds_timeseries"
    DISPLAY = "Remove clouds from several dates (time-series fill, CA-MTCR)"
    GROUP = "Clouds"
    GROUP_ID = "clouds"
    TAGS = ("time series", "multi-temporal", "ca-mtcr", "compositing", "gap filling")
    PARAMETER_HELP = PARAMETER_HELP

    def shortHelpString(self):  # noqa: N802
        return (
            "<p>Clears the clouds of one Sentinel-2 image (the <b>target</b> date) with <b>other dates</b> of the "
            "same place: where the target is cloudy, the ground is taken from the dates on which it was seen "
            "clear.</p>"
            "<p><b>Method</b>: <i>Automatic</i> (default) runs the method with the best held-out score recorded in "
            "the shipped cards for the inputs given (the number of other dates, with or without Sentinel-1) and "
            "says in the log which and why. <i>Time-series fill</i>: each cloudy pixel from the nearest date on "
            "which it is clear, matched to the target by robust local linear fits (96 px blocks, so phenology, "
            "haze and light are followed), its borders feathered into the observed pixels so no seam shows; "
            "pixels clear on no date get the single-image fill from the surroundings. <i>CA-MTCR</i>: the "
            "change-aware multi-temporal network (You et al. 2026) with every date, in overlapping 256 px tiles; "
            "the shipped weights are the <b>optical-only</b> variant (no real Sentinel-1 time series was available "
            "to train the SAR branch), trained on a CPU with L1 + SSIM (the paper's VGG16 terms left out).</p>"
            "<p><b>Other dates</b> (<tt>AUX</tt>, any number, any order, any grid: each is read on the target grid "
            "window by window): the date of each image is read from its metadata (MTD_MSIL*.xml, MTD_TL.xml) or "
            "its file name (YYYY-MM-DD as in SEN12MS-CR-TS names, YYYYMMDD as in SAFE names), or given in "
            "<tt>DATES</tt>: the target's first, then one per other date in input order, comma separated (an "
            "empty entry is read). Every date must hold the target's bands and overlap it; two images of the "
            "same date are refused. <i>Farthest date</i> (days, 0 = any) ignores dates further away.</p>"
            "<p><b>Sentinel-1</b> per date and <b>cloud masks</b> per date are matched to the Sentinel-2 dates by "
            "their own dates (within 6 days for Sentinel-1). Every date is masked by the cloud-mask engine "
            "(<i>Automatic</i>: a mask raster when given, else the SCL band, else the pretrained detector, else "
            "the DSen2-CR rules). The DEM is accepted for completeness; neither method reads terrain.</p>"
            "<p><b>Outputs</b>: the cloud-free target (same bands, grid, data type and nodata; clear pixels "
            "copied unchanged) and <b>SOURCE</b> (Byte): 0 observed clear, <i>k</i> filled from the <i>k</i>-th other "
            "date (AUX order), 253 predicted by CA-MTCR, 254 single-image fill, 255 nodata; styled with a legend of "
            "the dates; <b>What was observed</b> (<tt>OBSERVED</tt>, default <tt>&lt;output&gt;_observed.tif</tt>), "
            "as every cloud-removal run writes it: 1 observed clear, 4 filled from another date, 2 filled from the "
            "neighbourhood, 5 no information, 0 no data. <tt>REAL_FRACTION</tt>: the fraction of the cloudy pixels clear on another date, i.e. "
            "filled from real observations. The scene is processed in windows with a halo, so the result does not "
            "depend on the window size, and memory does not grow with the scene.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        methods, masks = series_method_choices(), mask_choices("removal")
        self.method_keys, self.mask_keys = keys(methods), keys(masks)
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Target Sentinel-2 image (the date to clear)"))
        self.addParameter(QgsProcessingParameterMultipleLayers("AUX", "Other Sentinel-2 dates (any order)",
                                                               QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterString(
            "DATES", "Dates (target first, then AUX in order; empty = from metadata or file names)", "",
            optional=True))
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Method", _labels(methods), defaultValue=0))
        self.addParameter(QgsProcessingParameterMultipleLayers("S1", "Sentinel-1 images (VV, VH; matched by date)",
                                                               QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (not read by these methods)", optional=True))
        self.addParameter(QgsProcessingParameterEnum("MASK_TYPE", "Cloud mask", _labels(masks), defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUD_MASK", "Cloud mask raster of the target",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("CLOUD_MASKS", "Cloud mask rasters of the other dates "
                                                                              "(matched by date)",
                                                               QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterNumber("MAX_DAYS", "Farthest date to use (days; 0 = any)",
                                                       QgsProcessingParameterNumber.Integer, 0, False, 0, 100000))
        self.addParameter(QgsProcessingParameterFile(
            "WEIGHTS", "CA-MTCR weights (default: the shipped ones)", optional=True,
            fileFilter="Model weights (*.safetensors);;All files (*)"))
        self.addParameter(QgsProcessingParameterString("DEVICE", "Device (auto, cpu, cuda, cuda:N)", "auto"))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "WINDOW", "Window of the time-series fill (px)", QgsProcessingParameterNumber.Integer, 1024, False, 64,
            16384)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "TILE_SIZE", "CA-MTCR tile size (px, multiple of 4)", QgsProcessingParameterNumber.Integer, 256, False,
            128, 4096)))  # tiles overlap by 64 px: at least twice that leaves room for the blended centre
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "FILL_DISTANCE", "Single-image fill search distance (px)", QgsProcessingParameterNumber.Integer, 100,
            False, 1, 2048)))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Cloud-free target"))
        self.addParameter(QgsProcessingParameterRasterDestination("SOURCE", "Source of each pixel (date or method)",
                                                                  optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            "OBSERVED", "What was observed (codes; default: <output>_observed.tif)", optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("REAL_FRACTION", "Fraction of the cloudy pixels filled from real "
                                                                  "observations"))
        self.addOutput(QgsProcessingOutputString("METHOD_USED", "Method used"))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", "Run time (s)"))

    def _files(self, parameters, name, context):
        out = []
        for k, layer in enumerate(self.parameterAsLayerList(parameters, name, context) or [], start=1):
            try:
                out.append(file_behind_layer(layer, f"{name} #{k}"))
            except LayerError as exc:
                raise QgsProcessingException(str(exc)) from None
        return out

    def request(self, parameters, context):
        from ..engine.clouds.request import InferenceOptions
        from ..engine.clouds.timeseries import TimeSeriesRequest
        from ..engine.clouds.timeseries_fill import FillOptions
        from ..engine.snow.dates import parse_date_list

        target = self.raster_file(parameters, "INPUT", context)
        aux = self._files(parameters, "AUX", context)
        if not aux:
            raise QgsProcessingException("AUX: give at least one other Sentinel-2 date of the same place")
        dates_text = self.parameterAsString(parameters, "DATES", context)
        dates = self.run_engine(lambda: parse_date_list(dates_text, 1 + len(aux), "DATES")) if dates_text.strip() \
            else None
        max_days = self.parameterAsInt(parameters, "MAX_DAYS", context)
        mask_key = self.mask_keys[self.parameterAsEnum(parameters, "MASK_TYPE", context)]
        method = self.method_keys[self.parameterAsEnum(parameters, "METHOD", context)]
        source = self.parameterAsOutputLayer(parameters, "SOURCE", context) if parameters.get("SOURCE") else None
        observed = parameters.get("OBSERVED")
        observed = (self.parameterAsOutputLayer(parameters, "OBSERVED", context) or None) if observed not in (
            None, "") and not (isinstance(observed, str) and observed.upper() == "SKIP") else None
        return TimeSeriesRequest(
            target=target, auxiliary=aux, output=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            source_output=source or None, observed_output=observed, dates=dates, s1=self._files(parameters, "S1", context),
            dem=self.raster_file(parameters, "DEM", context, required=False), method=method, mask_kind=mask_key,
            mask=self.raster_file(parameters, "CLOUD_MASK", context, required=False),
            masks=self._files(parameters, "CLOUD_MASKS", context),
            fill=FillOptions(max_days=float(max_days) if max_days > 0 else None),
            fallback_distance=self.parameterAsInt(parameters, "FILL_DISTANCE", context),
            weights=self.parameterAsFile(parameters, "WEIGHTS", context) or None,
            window=self.parameterAsInt(parameters, "WINDOW", context),
            inference=InferenceOptions(tile=self.parameterAsInt(parameters, "TILE_SIZE", context), overlap=64,
                                       device=(self.parameterAsString(parameters, "DEVICE", context) or "auto")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..engine.clouds.timeseries import remove_clouds_timeseries

        request = self.request(parameters, context)
        report = self.run_engine(lambda: remove_clouds_timeseries(request, self.monitor(feedback)), feedback)
        feedback.pushInfo(report.summary().splitlines()[0])
        name = display_name(self.parameterAsRasterLayer(parameters, "INPUT", context), request.target)
        self.style_output(context, request.output, "sentinel2", f"Cloud-free {name}" if name else "Cloud-free target")
        results = {"OUTPUT": request.output, "OBSERVED": report.observed_output, "REAL_FRACTION": report.real_fraction,
                   "METHOD_USED": report.method, "SECONDS": report.seconds}
        if request.source_output:
            from ..qgis_common.source_style import style_source_when_loaded

            style_source_when_loaded(context, request.source_output)
            results["SOURCE"] = request.source_output
        return results
