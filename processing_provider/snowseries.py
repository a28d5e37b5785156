"""Snow season algorithm: snow maps of several Sentinel-2 dates and the snow cover duration of a period."""
from __future__ import annotations

from qgis.core import (QgsField, QgsFields, QgsProcessing, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterBand,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString)
from qgis.PyQt.QtCore import QVariant

from ..engine.snow.chart import CLOUDY_PERCENT, SERIES_FIELDS
from ..engine.snow.duration import DEFAULT_MAX_GAP_DAYS, MAX_GAP_LIMIT
from ..engine.snow.series import finite_or_none, snow_series
from ..qgis_common.layers import LayerError, file_behind_layer
from ..qgis_common.snow_choices import (CLOUD_CHOICES, GRID_CHOICES, LIS_FIELDS, METHOD_CHOICES, RESOLUTION_CHOICES,
                                        THRESHOLD_FIELDS, SeasonChoice, Threshold, key_at, labels, season_request)
from .snow import S2_HELP, SNOW_MAP_HELP, SnowAlgorithm, menu_help

#: Tooltip help of the snow season's parameters.
SERIES_HELP = {
    **S2_HELP,
    **{k: SNOW_MAP_HELP[k] for k in ("METHOD", "DEM", "DEM_BAND", "CLOUD_SOURCE", "RED_TEST")},
    "INPUTS": "One Sentinel-2 image per date (band stacks, band files of products or SAFE subdatasets), any "
              "order; the first one's grid is the grid of the outputs.",
    "DATES": "YYYY-MM-DD of each image in the order above, comma-separated; empty (or an empty entry) = from "
             "the metadata or the file name.",
    "START": "First day of the period counted (YYYY-MM-DD); empty = the first date.",
    "END": "Last day of the period counted (YYYY-MM-DD); empty = the last date.",
    "MAX_GAP": "Cloudy days are filled in time from clear observations at most this many days apart; days in a "
               "longer gap stay unknown (Let It Snow: 15).",
    "CLOUD_MASKS": "With Cloud mask raster: one mask (0 clear, 2 shadow, other values cloud) or SCL raster per "
                   "image, in the order of the images.",
    "GRIDS": menu_help("Dates on another grid than the first date's:", GRID_CHOICES),
    "OUTPUT": "One GeoTIFF, a styled band each: snow cover duration (days), onset, melt-out, first and last snow "
              "day, clear observations, unknown days.",
    "SNOW_MAPS": "Folder for the snow map of each date (snowmap_YYYY-MM-DD.tif); empty = a temporary folder.",
    "OUTPUT_TABLE": "The snow area per date (km2, %, cloud %, snowline), opened as a table.",
    "OUTPUT_CSV": "Optional CSV of the same table.",
    "OUTPUT_HTML": "Optional HTML chart of the snow area per date, clear and cloudy dates marked.",
}

#: Field types of the per-date table.
TABLE_TYPES = {"date": QVariant.String, "observation": QVariant.String, "images": QVariant.Int,
               "in_period": QVariant.Bool}


class SnowSeriesAlgorithm(SnowAlgorithm):
    NAME = "snowseries"
    DISPLAY = "Snow season (snow cover duration from several dates)"
    SHORT = ("Snow maps of several Sentinel-2 dates and, over a period, the snow cover duration, first and last "
             "snow day, melt-out date and number of clear observations, with the snow area per date as a table "
             "and a chart.")
    TAGS = ("snow cover duration", "scd", "smod", "melt-out", "season", "time series", "multi-date")
    PARAMETER_HELP = SERIES_HELP
    HELP = (
        "<p>A snow season from several Sentinel-2 images, as the Let It Snow multi-date products: a <b>snow map per "
        "date</b> (classes 100 snow, 0 no snow, 205 cloud, 255 nodata; method, thresholds, DEM and cloud mask as in "
        "<i>Snow map</i>), then over the period from <b>start</b> to <b>end</b> (default: the first to the last date) "
        "one GeoTIFF with one styled band each: <b>1 snow cover duration</b> (snow days), 2 snow onset (first day "
        "of the longest snow period), <b>3 melt-out date</b> (last day of the longest snow period), <b>4 first</b> "
        "and <b>5 last snow day</b>, <b>6 number of clear observations</b> and 7 unknown days; days count from the "
        "start (day 0), nodata 65535 where a pixel has no clear observation in the period. The layer's styles "
        "(Layer Properties &gt; Style, or the layer's context menu) show each band.</p>"
        "<p><b>Dates</b>: each image's date is read from its product metadata (MTD_MSIL*.xml, MTD_TL.xml, a "
        "BigEarthNet JSON) or its file name (YYYYMMDD or YYYY-MM-DD, as in "
        "<tt>S2B_MSIL2A_20180204T...</tt> or <tt>..._2018-02-10_patch_0.tif</tt>); or type them in <i>Dates</i>, "
        "one per image in the order of the images, separated by commas (an empty entry reads that image's date). "
        "An image without a date is an error naming it. Two images of the same date are merged as Let It Snow "
        "merges them: per pixel the first clear observation (in input order) wins.</p>"
        "<p><b>Gap filling</b>: cloudy and nodata days are filled in time from the nearest clear observations "
        "before and after (linear interpolation of snow = 1 / no snow = 0, snow from 0.5: each day takes the "
        "nearer observation, a day half-way is snow) when they are at most <b>maximum gap</b> days apart (Let It "
        "Snow: 15); days inside a longer gap are unknown, and before the first (after the last) clear observation "
        "the observation holds for half the gap limit. Images dated outside the period help the filling near its "
        "ends but are not counted.</p>"
        "<p><b>Grids</b>: every date is compared with the first date's grid; another grid is aligned onto it "
        "(its snow map resampled, nearest neighbour) or refused, as chosen.</p>"
        "<p><b>Cloud mask</b> of each date: <i>Automatic</i> and <i>SCL</i> use each product's own SCL band; "
        "<i>Cloud mask raster</i> needs one raster per image (in the order of the images).</p>"
        f"<p><b>Outputs</b>: the duration GeoTIFF; the per-date snow maps (<tt>snowmap_YYYY-MM-DD.tif</tt>) in the "
        f"snow map folder (temporary when not chosen); the table of the snow area per date (km<sup>2</sup>, % of "
        f"the valid area, cloud %, clear %, the Let It Snow snowline, clear or cloudy observation: cloudy when cloud "
        f"covers more than {CLOUDY_PERCENT:g} % of the valid area), also as CSV; and an HTML page with the chart of "
        "the snow area per date, clear and cloudy observations marked.</p>")

    def threshold_parameter(self, item: Threshold):
        if item.integer:
            return QgsProcessingParameterNumber(item.name, item.label, QgsProcessingParameterNumber.Integer,
                                                item.default, False, item.minimum, item.maximum)
        return self.number(item.name, item.label, item.default, item.minimum, item.maximum)

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUTS", "Sentinel-2 images, one per date (band stacks, band files of products, SAFE subdatasets)",
            QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterString(
            "DATES", "Dates of the images in their order (YYYY-MM-DD, comma-separated) [from the metadata or names]",
            optional=True))
        self.addParameter(QgsProcessingParameterString("START", "Period start (YYYY-MM-DD) [the first date]",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString("END", "Period end (YYYY-MM-DD) [the last date]", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "MAX_GAP", "Maximum gap between clear observations filled in time (days)",
            QgsProcessingParameterNumber.Integer, DEFAULT_MAX_GAP_DAYS, False, 0, MAX_GAP_LIMIT))
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Method", labels(METHOD_CHOICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (Let It Snow snowline)", optional=True))
        self.addParameter(self.advanced(QgsProcessingParameterBand("DEM_BAND", "Elevation band", 1, "DEM",
                                                                   optional=True)))
        self.addParameter(QgsProcessingParameterEnum("CLOUD_SOURCE", "Cloud mask of each date", labels(CLOUD_CHOICES),
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "CLOUD_MASKS", "Cloud mask rasters, one per image in the same order", QgsProcessing.TypeRaster,
            optional=True))
        self.addParameter(QgsProcessingParameterEnum("GRIDS", "Dates on another grid than the first date's",
                                                     labels(GRID_CHOICES), defaultValue=0))
        ndsi, red = THRESHOLD_FIELDS
        self.addParameter(self.advanced(self.threshold_parameter(ndsi)))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean(
            "RED_TEST", "Single threshold: also require red above the red threshold", True)))
        self.addParameter(self.advanced(self.threshold_parameter(red)))
        for item in LIS_FIELDS:
            self.addParameter(self.advanced(self.threshold_parameter(item)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("RESOLUTION", "Output grid",
                                                                   labels(RESOLUTION_CHOICES), defaultValue=0)))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Snow cover duration"))
        self.addParameter(QgsProcessingParameterFolderDestination("SNOW_MAPS", "Snow maps of the dates (folder)",
                                                                  optional=True, createByDefault=False))
        self.addParameter(self.table_output("OUTPUT_TABLE", "Snow area per date"))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_CSV", "Snow area per date (CSV)",
                                                                "CSV files (*.csv)", optional=True,
                                                                createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_HTML", "Snow area chart", "HTML files (*.html)",
                                                                optional=True))
        for name, label in (("DATES_COUNT", "Distinct dates"), ("MEAN_SCD", "Mean snow cover duration (days)"),
                            ("MAX_SCD", "Largest snow cover duration (days)"),
                            ("SNOW_FREE_PERCENT", "Pixels never snow-covered (% of the observed pixels)"),
                            ("MEAN_NOBS", "Mean number of clear observations")):
            self.addOutput(QgsProcessingOutputNumber(name, label))

    def layer_files(self, parameters, name: str, context):
        """The files behind the layers of a multiple-layer parameter, in the order given."""
        layers = self.parameterAsLayerList(parameters, name, context) or []
        try:
            return [file_behind_layer(layer, f"{name} #{i + 1}") for i, layer in enumerate(layers)]
        except LayerError as exc:
            raise QgsProcessingException(str(exc)) from None

    def choice(self, parameters, context) -> SeasonChoice:
        values = {f.key: (self.parameterAsInt if f.integer else self.parameterAsDouble)(parameters, f.name, context)
                  for f in THRESHOLD_FIELDS + LIS_FIELDS}

        def optional_path(name, as_file=True):
            if parameters.get(name) in (None, ""):
                return None
            read = self.parameterAsFileOutput if as_file else self.parameterAsString
            return read(parameters, name, context) or None

        return SeasonChoice(
            images=self.layer_files(parameters, "INPUTS", context),
            output=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            dates=self.parameterAsString(parameters, "DATES", context) or "",
            method=key_at(METHOD_CHOICES, self.parameterAsEnum(parameters, "METHOD", context)), values=values,
            red_test=self.parameterAsBoolean(parameters, "RED_TEST", context),
            dem=self.raster_file(parameters, "DEM", context, required=False),
            dem_band=self.parameterAsInt(parameters, "DEM_BAND", context) or 1,
            cloud=key_at(CLOUD_CHOICES, self.parameterAsEnum(parameters, "CLOUD_SOURCE", context)),
            cloud_rasters=self.layer_files(parameters, "CLOUD_MASKS", context),
            resolution=key_at(RESOLUTION_CHOICES, self.parameterAsEnum(parameters, "RESOLUTION", context)),
            start=self.parameterAsString(parameters, "START", context) or "",
            end=self.parameterAsString(parameters, "END", context) or "",
            max_gap_days=self.parameterAsInt(parameters, "MAX_GAP", context),
            grids=key_at(GRID_CHOICES, self.parameterAsEnum(parameters, "GRIDS", context)),
            snow_map_folder=optional_path("SNOW_MAPS", as_file=False),
            statistics_csv=optional_path("OUTPUT_CSV"), chart_html=optional_path("OUTPUT_HTML"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        choice = self.choice(parameters, context)
        request, notes = self.run_engine(lambda: season_request(choice), None)
        for note in notes:
            feedback.pushInfo(note)
        report = self.run_engine(lambda: snow_series(request, self.monitor(feedback)), feedback)
        self.style_output(context, report.output, "snow_duration",
                          f"Snow cover duration, {len(report.rows)} dates" if report.rows else "Snow cover duration")
        fields = QgsFields()
        for name in SERIES_FIELDS:
            fields.append(QgsField(name, TABLE_TYPES.get(name, QVariant.Double)))
        summary = report.summary
        results = {"OUTPUT": report.output,
                   "OUTPUT_TABLE": self.write_table(parameters, "OUTPUT_TABLE", context, fields,
                                                    (list(row.values()) for row in report.rows)),
                   "DATES_COUNT": len(report.rows), "MEAN_SCD": finite_or_none(summary.mean_scd),
                   "MAX_SCD": summary.max_scd, "SNOW_FREE_PERCENT": finite_or_none(summary.snow_free_percent),
                   "MEAN_NOBS": finite_or_none(summary.mean_nobs)}
        for key, value in (("SNOW_MAPS", report.snow_map_folder), ("OUTPUT_CSV", report.statistics_csv),
                           ("OUTPUT_HTML", report.chart_html)):
            if value:
                results[key] = value
        return results
