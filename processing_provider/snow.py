"""Snow algorithms: NDSI, snow map (single threshold or Let It Snow) and snow statistics."""
from __future__ import annotations

import math

from qgis.core import (QgsCoordinateReferenceSystem, QgsField, QgsFields, QgsProcessingException,
                       QgsProcessingOutputNumber, QgsProcessingParameterBand, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum, QgsProcessingParameterExtent, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer)
from qgis.PyQt.QtCore import QVariant

from ..engine.sentinel2.locate import locate_bands
from ..engine.snow.mapping import CloudInput, SnowParameters, compute_ndsi, snow_map, snow_statistics
from .base import TopoClearAlgorithm

ROLE_PARAMETERS = {"B3": ("GREEN", "Green band (B3)"), "B4": ("RED", "Red band (B4)"),
                   "B11": ("SWIR", "SWIR1 band (B11, 1610 nm)")}
RESOLUTION_LABELS = ["Coarsest band grid (20 m for Sentinel-2, as Let It Snow)",
                     "Finest band grid (10 m; 20 m bands repeated)"]
RESOLUTIONS = ["coarsest", "finest"]
CLOUD_LABELS = ["Automatic: the product's own SCL band when found beside the bands, else no mask",
                "SCL scene classification raster (choose it below, or the product's own)",
                "Cloud mask raster (choose it below): non-zero = cloud",
                "No cloud mask"]
METHOD_LABELS = ["Let It Snow: two passes with the DEM snowline and dark-cloud release",
                 "Single NDSI threshold (plus the red-band test)"]
METHODS = ["lis", "threshold"]
FSC_LABELS = ["Gascoin et al. 2020 (Sentinel-2, LIS): 0.5 tanh(2.65 NDSI - 1.42) + 0.5",
              "Salomonson & Appel 2004 (MODIS): 1.45 NDSI - 0.01"]
FSC_KEYS = ["gascoin", "salomonson"]

INPUT_HELP = (
    "<p><b>Sentinel-2 input</b>: a <i>band stack</i> (13-band L1C in the order B1..B12 with B8A and B10, "
    "12-band L2A without B10, or the 10-band B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12 set; band descriptions "
    "that name the bands win over the count), <i>one band file</i> of a product whose bands are separate files "
    "named like <tt>..._B03.tif</tt> or <tt>T32TLR_..._B11_20m.jp2</tt> (the other bands are found beside it), "
    "a GDAL <tt>SENTINEL2_L2A:</tt> subdataset, or a <b>product folder</b> (a .SAFE folder or a folder of band "
    "files; the 20 m files of an L2A SAFE are used). Band roles are picked automatically; the band pickers and "
    "band files (advanced) override them, and a layer that is not Sentinel-2-like needs them.</p>"
    "<p><b>Reflectance</b> = (DN + offset) / 10000. The offset is -1000 from processing baseline 04.00 (products "
    "from 25 January 2022) and 0 before; it is read from the product's MTD_MSIL*.xml when found, otherwise from "
    "the baseline in the product name (N0400 and later). Floating-point layers are taken as reflectance. Both "
    "can be set explicitly (advanced).</p>"
    "<p><b>Grid</b>: the coarsest band's grid by default (20 m: green and red are averaged over each 20 m cell, "
    "as Let It Snow works at 20 m), or the finest. <b>Extent</b> (optional) limits the work to an area. Whole "
    "tiles are processed window by window with bounded memory.</p>")


class SnowAlgorithm(TopoClearAlgorithm):
    GROUP = "Snow"
    GROUP_ID = "snow"

    def add_s2_parameters(self, roles):
        self.addParameter(QgsProcessingParameterRasterLayer(
            "INPUT", "Sentinel-2 layer (band stack, one band file of the product, or a SAFE subdataset)",
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "SAFE", "...or a Sentinel-2 product folder (.SAFE, or a folder of band files)",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        for role in roles:
            name, label = ROLE_PARAMETERS[role]
            self.addParameter(QgsProcessingParameterBand(f"{name}_BAND", f"{label} of the layer [automatic]", None,
                                                         "INPUT", optional=True))
        for role in roles:
            name, label = ROLE_PARAMETERS[role]
            self.addParameter(self.advanced(QgsProcessingParameterRasterLayer(
                f"{name}_FILE", f"{label} as a separate file (its band 1) [automatic]", optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("RESOLUTION", "Output grid", RESOLUTION_LABELS,
                                                                   defaultValue=0)))
        self.addParameter(self.advanced(self.number(
            "DN_OFFSET", "DN offset added before scaling [automatic from the metadata]", None, optional=True)))
        self.addParameter(self.advanced(self.number(
            "QUANTIFICATION", "Quantification value: reflectance = (DN + offset) / value [automatic]", None,
            minimum=1e-9, optional=True)))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Limit to extent [whole image]", optional=True))

    def s2_source(self, parameters, context, roles):
        """(source path, overrides, offset, quantification, resolution, product) from the parameters."""
        layer_path = self.raster_file(parameters, "INPUT", context, required=False)
        folder = self.parameterAsFile(parameters, "SAFE", context)
        source = folder or layer_path
        overrides = {}
        for role in roles:
            name, _ = ROLE_PARAMETERS[role]
            file_path = self.raster_file(parameters, f"{name}_FILE", context, required=False)
            band = self.parameterAsInt(parameters, f"{name}_BAND", context) if parameters.get(f"{name}_BAND") not in (
                None, "") else 0
            if file_path:
                overrides[role] = (file_path, 1)
            elif band:
                if not layer_path:
                    raise QgsProcessingException(f"{name}_BAND: a band of the layer was chosen but no layer was given")
                overrides[role] = (layer_path, band)
        if not source and len(overrides) < len(roles):
            raise QgsProcessingException("Choose a Sentinel-2 layer or a product folder (or every band as a file)")
        offset = None if parameters.get("DN_OFFSET") in (None, "") else self.parameterAsDouble(
            parameters, "DN_OFFSET", context)
        quantification = None if parameters.get("QUANTIFICATION") in (None, "") else self.parameterAsDouble(
            parameters, "QUANTIFICATION", context)
        resolution = RESOLUTIONS[self.parameterAsEnum(parameters, "RESOLUTION", context)]
        product = self.run_engine(lambda: locate_bands(source or None, roles, overrides, offset, quantification), None)
        return product, resolution

    def extent(self, parameters, context, product):
        if parameters.get("EXTENT") in (None, ""):
            return None
        import rasterio

        first = next(iter(product.bands.values()))
        with rasterio.open(first.path) as ds:
            crs = QgsCoordinateReferenceSystem(ds.crs.to_wkt()) if ds.crs else QgsCoordinateReferenceSystem()
        rect = self.parameterAsExtent(parameters, "EXTENT", context, crs)
        if rect.isNull() or rect.isEmpty():
            return None
        return rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()


class NdsiAlgorithm(SnowAlgorithm):
    NAME = "ndsi"
    DISPLAY = "NDSI (normalized difference snow index)"
    HELP = ("<p>Normalized difference snow index of a Sentinel-2 image: <b>NDSI = (green - SWIR1) / "
            "(green + SWIR1)</b> with green = B3 (560 nm) and SWIR1 = B11 (1610 nm), on reflectance. Snow is bright "
            "in the green and dark in the SWIR: NDSI above about 0.4 is snow (or water, which the snow map's red "
            "test removes).</p>" + INPUT_HELP +
            "<p><b>Output</b>: Float32 GeoTIFF, nodata -9999 (nodata input, or green + SWIR1 not positive), "
            "styled with a brown-white-blue ramp.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_s2_parameters(("B3", "B11"))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "NDSI"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        product, resolution = self.s2_source(parameters, context, ("B3", "B11"))
        bounds = self.extent(parameters, context, product)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        self.run_engine(lambda: compute_ndsi(None, output, resolution=resolution, bounds=bounds,
                                             monitor=self.monitor(feedback), product=product), feedback)
        self.style_output(context, output, "ndsi")
        return {"OUTPUT": output}


class SnowMapAlgorithm(SnowAlgorithm):
    NAME = "snowmap"
    DISPLAY = "Snow map (Let It Snow or NDSI threshold)"
    HELP = (
        "<p>Snow cover map of a Sentinel-2 image with the Theia / Let It Snow classes: <b>100 snow, 0 no snow, "
        "205 cloud</b> (cloud shadow included), <b>255 nodata</b>. The map opens styled (snow blue, no snow "
        "neutral, cloud grey) and carries its class names and the run's figures as metadata.</p>"
        "<p><b>Single NDSI threshold</b>: snow where not cloud, NDSI &gt; the threshold (0.40) and, unless "
        "unticked, red reflectance &gt; 0.20 (the red test removes water, whose NDSI is often high).</p>"
        "<p><b>Let It Snow</b> (Gascoin et al. 2019, the CNES/Theia operational Sentinel-2 snow product; defaults "
        "are its operational values): (1) clouds of the mask that are neither shadow nor high cloud (SCL 3, 10) "
        "and whose red reflectance averaged over 240 m is below 0.30 (dark clouds) are released to the snow "
        "tests; (2) pass 1: snow where NDSI &gt; 0.40 and red &gt; 0.20; (3) the DEM is cut into 100 m elevation "
        "bands from the lowest elevation; scanning upward, the first band whose cloud-free fraction is &gt; 0.10 "
        "and whose pass-1 snow fraction is &gt; 0.10 sets the <b>snowline</b> z<sub>s</sub> = lower edge of the "
        "band two below it (skipped if pass-1 snow covers no more than 0.1 % of the image); (4) pass 2: above "
        "z<sub>s</sub>, snow where NDSI &gt; 0.15 and red &gt; 0.04; (5) mask clouds that are not snow stay cloud "
        "if their red &gt; 0.10, else become no snow. Released dark clouds go through pass 1 as the algorithm "
        "document describes (the reference code tests them in pass 2 only). Without a DEM only the cloud "
        "release and pass 1 run.</p>"
        "<p><b>DEM</b>: any raster covering the image, in any CRS and resolution: it is aligned onto the image "
        "grid (bilinear) window by window. A DEM that does not overlap the image is an error.</p>"
        "<p><b>Cloud mask</b>: the L2A scene classification (SCL: 3 shadow, 8 and 9 cloud, 10 cirrus are cloud; "
        "0 is nodata), any mask raster (non-zero = cloud), or none. <i>Automatic</i> uses the SCL band found "
        "beside the product's bands (a SAFE folder or its band files).</p>"
        "<p><b>Fractional snow cover</b> (optional output, Float32 0-1 on snow pixels, 0 on no-snow, nodata "
        "-9999 on cloud and nodata): Gascoin et al. (2020) 0.5 tanh(2.65 NDSI - 1.42) + 0.5, or Salomonson & "
        "Appel (2004) 1.45 NDSI - 0.01, clipped to [0, 1].</p>" + INPUT_HELP +
        "<p><b>Outputs</b>: the snow map (Byte GeoTIFF with a colour table) and the numbers SNOW_AREA_KM2, "
        "SNOW_PERCENT and CLOUD_PERCENT (of the valid area) and SNOWLINE (m; none when not found).</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_s2_parameters(("B3", "B4", "B11"))
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Method", METHOD_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (Let It Snow snowline) [optional]",
                                                            optional=True))
        self.addParameter(self.advanced(QgsProcessingParameterBand("DEM_BAND", "Elevation band", 1, "DEM",
                                                                   optional=True)))
        self.addParameter(QgsProcessingParameterEnum("CLOUD_SOURCE", "Cloud mask", CLOUD_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUD_MASK", "Cloud mask or SCL raster [optional]",
                                                            optional=True))
        self.addParameter(self.number("NDSI_THRESHOLD", "Single threshold: NDSI above", 0.40, -1.0, 1.0))
        self.addParameter(QgsProcessingParameterBoolean("RED_TEST", "Single threshold: also require red above "
                                                        "the red threshold", True))
        self.addParameter(self.number("RED_THRESHOLD", "Single threshold: red reflectance above", 0.20, 0.0, 2.0))
        lis = [("NDSI_PASS1", "Let It Snow pass 1: NDSI above", 0.40, -1.0, 1.0),
               ("RED_PASS1", "Let It Snow pass 1: red reflectance above", 0.20, 0.0, 2.0),
               ("NDSI_PASS2", "Let It Snow pass 2: NDSI above", 0.15, -1.0, 1.0),
               ("RED_PASS2", "Let It Snow pass 2: red reflectance above", 0.04, 0.0, 2.0),
               ("FSNOW_LIM", "Snowline: snow fraction of an elevation band above", 0.10, 0.0, 1.0),
               ("FCLEAR_LIM", "Snowline: cloud-free fraction of an elevation band above", 0.10, 0.0, 1.0),
               ("FSNOW_TOTAL_LIM", "Snowline: only when pass-1 snow covers more than (fraction)", 0.001, 0.0, 1.0),
               ("RED_DARKCLOUD", "Dark cloud: red reflectance averaged over the block below", 0.30, 0.0, 2.0),
               ("DARKCLOUD_SCALE", "Dark cloud: averaging block size (m; 0 = per pixel)", 240.0, 0.0, 100000.0),
               ("RED_BACKTOCLOUD", "Back to cloud: red reflectance above", 0.10, 0.0, 2.0)]
        for name, label, default, lo, hi in lis:
            self.addParameter(self.advanced(self.number(name, label, default, lo, hi)))
        band_height = QgsProcessingParameterNumber("BAND_HEIGHT", "Snowline: elevation band height (m)",
                                                   QgsProcessingParameterNumber.Integer, 100, False, 1, 10000)
        self.addParameter(self.advanced(band_height))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Snow map"))
        self.addParameter(QgsProcessingParameterRasterDestination("FSC", "Fractional snow cover", optional=True,
                                                                  createByDefault=False))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("FSC_FORMULA", "Fractional snow cover formula",
                                                                   FSC_LABELS, defaultValue=0)))
        for name, label in (("SNOW_AREA_KM2", "Snow area (km2)"), ("SNOW_PERCENT", "Snow (% of the valid area)"),
                            ("CLOUD_PERCENT", "Cloud (% of the valid area)"), ("SNOWLINE", "Snowline (m)")):
            self.addOutput(QgsProcessingOutputNumber(name, label))

    def parameters_from(self, parameters, context) -> SnowParameters:
        value = lambda name: self.parameterAsDouble(parameters, name, context)  # noqa: E731
        red_test = self.parameterAsBoolean(parameters, "RED_TEST", context)
        return self.run_engine(lambda: SnowParameters(
            method=METHODS[self.parameterAsEnum(parameters, "METHOD", context)],
            ndsi_threshold=value("NDSI_THRESHOLD"), red_threshold=value("RED_THRESHOLD") if red_test else None,
            ndsi_pass1=value("NDSI_PASS1"), red_pass1=value("RED_PASS1"), ndsi_pass2=value("NDSI_PASS2"),
            red_pass2=value("RED_PASS2"), band_height=self.parameterAsInt(parameters, "BAND_HEIGHT", context),
            fsnow_lim=value("FSNOW_LIM"), fclear_lim=value("FCLEAR_LIM"), fsnow_total_lim=value("FSNOW_TOTAL_LIM"),
            red_darkcloud=value("RED_DARKCLOUD"), darkcloud_scale=value("DARKCLOUD_SCALE"),
            red_backtocloud=value("RED_BACKTOCLOUD")).validate(), None)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        product, resolution = self.s2_source(parameters, context, ("B3", "B4", "B11"))
        bounds = self.extent(parameters, context, product)
        params = self.parameters_from(parameters, context)
        dem = self.raster_file(parameters, "DEM", context, required=False)
        dem_band = self.parameterAsInt(parameters, "DEM_BAND", context) or 1
        kind = ("auto", "scl", "mask", "none")[self.parameterAsEnum(parameters, "CLOUD_SOURCE", context)]
        mask = self.raster_file(parameters, "CLOUD_MASK", context, required=False)
        if kind == "mask" and not mask:
            raise QgsProcessingException("CLOUD_MASK: 'Cloud mask raster' was chosen but no raster was given")
        if kind == "none" and mask:
            feedback.pushInfo("A cloud mask raster was given but 'No cloud mask' is chosen: it is not used.")
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        fsc = (self.parameterAsOutputLayer(parameters, "FSC", context)
               if parameters.get("FSC") not in (None, "") else None)
        formula = FSC_KEYS[self.parameterAsEnum(parameters, "FSC_FORMULA", context)]
        if params.method == "threshold" and dem:
            feedback.pushInfo("The single-threshold method does not use the DEM.")
        result = self.run_engine(lambda: snow_map(
            None, output, params, dem=dem, dem_band=dem_band,
            cloud=CloudInput(kind, mask if kind != "none" else None), fsc_output=fsc or None, fsc_formula=formula,
            resolution=resolution, bounds=bounds, monitor=self.monitor(feedback), product=product), feedback)
        if result.pass1_bands:
            feedback.pushInfo("Pass-1 elevation bands (m: total / snow / no snow / cloud pixels):")
            for band in result.pass1_bands:
                feedback.pushInfo(f"  {band.z_min:.0f}-{band.z_max:.0f}: {band.total} / {band.snow} / "
                                  f"{band.no_snow} / {band.cloud}")
        self.style_output(context, output, "snowmap")
        outputs = {"OUTPUT": output, "SNOW_AREA_KM2": result.snow_area_km2, "SNOW_PERCENT": result.snow_percent,
                   "CLOUD_PERCENT": result.cloud_percent, "SNOWLINE": result.snowline}
        if fsc:
            self.style_output(context, fsc, "fsc")
            outputs["FSC"] = fsc
        return outputs


class SnowStatsAlgorithm(SnowAlgorithm):
    NAME = "snowstats"
    DISPLAY = "Snow statistics (area, snowline, elevation bands)"
    HELP = ("<p>Figures of a snow map (classes 100 snow, 0 no snow, 205 cloud, 255 nodata, as written by "
            "<i>Snow map</i>): <b>snow area</b> in km<sup>2</sup> (pixel count x pixel area; true areas on "
            "geographic grids), <b>snow</b>, <b>no snow</b> and <b>cloud</b> as % of the valid (non-nodata) area, "
            "and the <b>snowline</b> elevation.</p>"
            "<p>With a <b>DEM</b> (any CRS and resolution, aligned onto the map's grid), the <b>table</b> lists each "
            "elevation band (the band height, at multiples of it: 1200-1300 m, 1300-1400 m..., so tables of "
            "different dates line up): band min, max and centre, and its total, snow, no-snow and cloud pixel "
            "counts and snow fraction of the cloud-free pixels; a last row <i>all</i> totals the whole map. The "
            "table opens in QGIS and is also written as CSV.</p>"
            "<p><b>Snowline</b>: the snowline a Let It Snow run stored in the map; for other maps it is derived from "
            "the table with the Let It Snow rule (first band with cloud-free fraction &gt; 0.10 and snow fraction "
            "&gt; 0.10, lower edge of the band two below).</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Snow map"))
        self.addParameter(self.advanced(QgsProcessingParameterBand("BAND", "Snow map band", 1, "INPUT",
                                                                   optional=True)))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (for the elevation-band table) [optional]",
                                                            optional=True))
        self.addParameter(self.advanced(QgsProcessingParameterBand("DEM_BAND", "Elevation band", 1, "DEM",
                                                                   optional=True)))
        self.addParameter(QgsProcessingParameterNumber("BAND_HEIGHT", "Elevation band height (m)",
                                                       QgsProcessingParameterNumber.Integer, 100, False, 1, 10000))
        self.addParameter(self.table_output("OUTPUT_TABLE", "Snow by elevation band"))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_CSV", "Snow by elevation band (CSV)",
                                                                "CSV files (*.csv)", optional=True))
        for name, label in (("SNOW_AREA_KM2", "Snow area (km2)"), ("VALID_AREA_KM2", "Valid area (km2)"),
                            ("SNOW_PERCENT", "Snow (% of the valid area)"),
                            ("NO_SNOW_PERCENT", "No snow (% of the valid area)"),
                            ("CLOUD_PERCENT", "Cloud (% of the valid area)"), ("SNOWLINE", "Snowline (m)")):
            self.addOutput(QgsProcessingOutputNumber(name, label))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        path = self.raster_file(parameters, "INPUT", context)
        band = self.parameterAsInt(parameters, "BAND", context) or 1
        dem = self.raster_file(parameters, "DEM", context, required=False)
        dem_band = self.parameterAsInt(parameters, "DEM_BAND", context) or 1
        height = self.parameterAsInt(parameters, "BAND_HEIGHT", context)
        stats = self.run_engine(lambda: snow_statistics(path, dem, dem_band, height, band,
                                                        monitor=self.monitor(feedback)), feedback)
        fields = QgsFields()
        fields.append(QgsField("band", QVariant.String))
        for name in stats.TABLE_FIELDS:
            kind = QVariant.Double if name.endswith("_m") or name == "snow_fraction" else QVariant.LongLong
            fields.append(QgsField(name, kind))
        rows = ([None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in stats.rows())
        results = {"OUTPUT_TABLE": self.write_table(parameters, "OUTPUT_TABLE", context, fields, rows),
                   "SNOW_AREA_KM2": stats.snow_area_km2,
                   "VALID_AREA_KM2": stats.valid_area_km2, "SNOW_PERCENT": stats.snow_percent,
                   "NO_SNOW_PERCENT": stats.no_snow_percent, "CLOUD_PERCENT": stats.cloud_percent,
                   "SNOWLINE": stats.snowline}
        csv_path = self.parameterAsFileOutput(parameters, "OUTPUT_CSV", context)
        if csv_path:
            self.run_engine(lambda: stats.write_csv(csv_path), feedback)
            results["OUTPUT_CSV"] = csv_path
        feedback.pushInfo(f"Snow {stats.snow_area_km2:.4f} km2 = {stats.snow_percent:.2f} % of the valid area "
                          f"({stats.valid_area_km2:.4f} km2); cloud {stats.cloud_percent:.2f} %; snowline "
                          + (f"{stats.snowline:.0f} m" if stats.snowline is not None else "none")
                          + f" ({stats.snowline_source})")
        return results
