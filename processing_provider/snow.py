"""Snow algorithms: NDSI, snow map (single threshold or Let It Snow) and snow statistics."""
from __future__ import annotations

import math

from qgis.core import (QgsCoordinateReferenceSystem, QgsField, QgsFields, QgsProcessingOutputNumber,
                       QgsProcessingParameterBand, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum, QgsProcessingParameterExtent, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer)
from qgis.PyQt.QtCore import QVariant

from ..engine.snow.mapping import snow_map
from ..engine.snow.ndsi import compute_ndsi
from ..engine.snow.requests import Sentinel2Input
from ..engine.snow.statistics import snow_statistics
from ..qgis_common.layers import display_name
from ..qgis_common.snow_choices import (CLOUD_CHOICES, FSC_CHOICES, LIS_FIELDS, METHOD_CHOICES, NDSI_ROLES,
                                        RESOLUTION_CHOICES, SNOW_MAP_ROLES, THRESHOLD_FIELDS, ImageChoice,
                                        SnowMapChoice, Threshold, key_at, ndsi_request, sentinel2_input,
                                        snow_map_request, snow_statistics_request)
from .base import TopoClearAlgorithm
from .checks import is_empty

#: Processing parameter names of the bands (``GREEN_BAND``, ``GREEN_FILE``...).
BAND_PARAMETERS = {"B3": "GREEN", "B4": "RED", "B11": "SWIR"}
#: How the bands are named in the parameters' labels (short: the dialog is narrow).
BAND_LABELS = {"B3": "Green (B3)", "B4": "Red (B4)", "B11": "SWIR1 (B11)"}

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


def menu(choices) -> list:
    """The entries of a Processing menu: each choice's title (its label up to the explanation after ': '),
    short enough for the dialog; the whole labels are in the parameter's help."""
    return [c.label.split(": ")[0] for c in choices]


def menu_help(intro: str, choices) -> str:
    return intro + " " + "; ".join(c.label for c in choices) + "."


#: Tooltip help of the Sentinel-2 parameters (QGIS shows it over the label, where it supports parameter help);
#: ``BAND`` and ``FILE`` stand for every ``<band>_BAND`` and ``<band>_FILE``.
S2_HELP = {
    "INPUT": "A band stack (13-band L1C, 12-band L2A or the 10-band 10 m + 20 m set), one band file of the product "
             "(the other bands are found beside it) or a SENTINEL2_L2A subdataset. Leave it empty when a product "
             "folder is given below, or every band as a separate file.",
    "SAFE": "A .SAFE folder (the 20 m bands of an L2A product are used), or a folder of band files named like "
            "..._B03.tif; it replaces the image above.",
    "BAND": "A band number of the image above, overriding the automatic choice (empty: found from the layout or "
            "the band descriptions).",
    "FILE": "A separate single-band file for this band (its band 1), overriding the automatic choice (empty: "
            "found from the image).",
    "RESOLUTION": menu_help("The grid of the output:", RESOLUTION_CHOICES) + " On the coarsest grid the 10 m bands "
                  "are averaged over each 20 m cell; on the finest the 20 m bands are repeated.",
    "DN_OFFSET": "Added to the digital numbers before dividing by the quantification value: reflectance = "
                 "(DN + offset) / quantification. Empty: read from the product's MTD_MSIL*.xml, else -1000 from "
                 "processing baseline 04.00 (in the product name), else 0.",
    "QUANTIFICATION": "Reflectance = (DN + offset) / quantification. Empty: from the metadata, else 10000 for "
                      "integer bands and 1 for floating-point reflectance. Needed for 8-bit (scaled) products.",
    "EXTENT": "Compute only this area (in any CRS); empty: the whole image.",
}
#: Tooltip help of the snow map's own parameters.
SNOW_MAP_HELP = {
    "METHOD": menu_help("How snow is told from no snow:", METHOD_CHOICES),
    "DEM": "Elevations for Let It Snow's snowline and pass 2, any CRS and resolution (aligned onto the image "
           "grid). Without a DEM only pass 1 runs; the single threshold does not use it.",
    "DEM_BAND": "The band of the DEM holding the elevations (default: band 1).",
    "CLOUD_SOURCE": menu_help("Where the clouds come from:", CLOUD_CHOICES),
    "CLOUD_MASK": "The cloud mask or the L2A scene classification (SCL) raster, on any grid covering the image. "
                  "Used by the Automatic, SCL and Cloud mask raster choices above.",
    "RED_TEST": "Single-threshold method: snow also needs a red reflectance above the red threshold (removes "
                "water, whose NDSI is often high).",
    "OUTPUT": "The snow map, a GeoTIFF (.tif): 100 snow, 0 no snow, 205 cloud, 255 nodata.",
    "FSC": "Optional Float32 GeoTIFF of the fraction of each snow pixel covered by snow (0-1).",
    "FSC_FORMULA": menu_help("The NDSI-to-fraction formula:", FSC_CHOICES),
}
#: Tooltip help of the snow statistics' parameters.
SNOW_STATS_HELP = {
    "INPUT": "A snow map with the Let It Snow classes (100 snow, 0 no snow, 205 cloud, 255 nodata), as the Snow "
             "map algorithm writes it.",
    "BAND": "The band of the snow map holding the classes (default: band 1).",
    "DEM": "Elevations for the table by elevation band, any CRS and resolution (aligned onto the map's grid). "
           "Empty: no table, the figures only.",
    "DEM_BAND": "The band of the DEM holding the elevations (default: band 1).",
    "BAND_HEIGHT": "The height of the table's elevation bands, in metres; bands start at multiples of it.",
    "OUTPUT_TABLE": "The table by elevation band, opened in QGIS (needs a DEM).",
    "OUTPUT_CSV": "The same table as a CSV file (needs a DEM).",
}
#: Help of the thresholds, by the key of their :class:`~topoclear.qgis_common.snow_choices.Threshold`.
THRESHOLD_HELP = {
    "ndsi_threshold": "Single-threshold method: snow where the NDSI is above this value (0.40).",
    "red_threshold": "Single-threshold method, with the red test: snow also needs red reflectance above this.",
    "ndsi_pass1": "Let It Snow pass 1 (whole image): snow where the NDSI is above this value.",
    "red_pass1": "Let It Snow pass 1: snow also needs red reflectance above this value.",
    "ndsi_pass2": "Let It Snow pass 2 (above the snowline, needs a DEM): snow where the NDSI is above this value.",
    "red_pass2": "Let It Snow pass 2: snow also needs red reflectance above this value.",
    "fsnow_lim": "Snowline: the first elevation band (from the bottom) whose pass-1 snow fraction is above this "
                 "value sets the snowline.",
    "fclear_lim": "Snowline: only elevation bands whose cloud-free fraction is above this value count.",
    "fsnow_total_lim": "Snowline: searched only when pass-1 snow covers more than this fraction of the image.",
    "red_darkcloud": "Dark clouds: mask clouds whose red reflectance, averaged over blocks, is below this value are "
                     "released to the snow tests.",
    "darkcloud_scale": "Dark clouds: the size of the averaging blocks, in metres (0: pixel by pixel).",
    "red_backtocloud": "Mask clouds that are not snow stay cloud when their red reflectance is above this value, "
                       "else they become no snow.",
    "band_height": "Snowline: the height of the elevation bands, in metres.",
}


#: Threshold key of each threshold parameter (by parameter name).
THRESHOLD_KEYS = {f.name: f.key for f in THRESHOLD_FIELDS + LIS_FIELDS}


class SnowAlgorithm(TopoClearAlgorithm):
    GROUP = "Snow"
    GROUP_ID = "snow"
    #: The bands the algorithm reads through its Sentinel-2 parameters (none: it has none).
    ROLES: tuple = ()
    #: Tooltip help of the algorithm's parameters, by name (thresholds: :data:`THRESHOLD_HELP`).
    PARAMETER_HELP: dict = S2_HELP

    def parameter_help(self, name: str):
        """Thresholds from :data:`THRESHOLD_HELP`; band and file parameters by their kind; else by name."""
        prefix, _, suffix = name.rpartition("_")
        kind = suffix if prefix in BAND_PARAMETERS.values() and suffix in ("BAND", "FILE") else name
        return THRESHOLD_HELP.get(THRESHOLD_KEYS.get(name, "")) or self.PARAMETER_HELP.get(kind)

    def add_s2_parameters(self, roles):
        # Optional only because a product folder (SAFE) or band files may replace it: parameter_problem
        # asks for one of them before a run.
        self.addParameter(QgsProcessingParameterRasterLayer(
            "INPUT", "Sentinel-2 image (or a product folder below)", optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "SAFE", "...or a product folder (.SAFE)",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        for role in roles:
            self.addParameter(QgsProcessingParameterBand(f"{BAND_PARAMETERS[role]}_BAND",
                                                         f"{BAND_LABELS[role]} band [automatic]", None,
                                                         "INPUT", optional=True))
        for role in roles:
            self.addParameter(self.advanced(QgsProcessingParameterRasterLayer(
                f"{BAND_PARAMETERS[role]}_FILE", f"{BAND_LABELS[role]} as a separate file",
                optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("RESOLUTION", "Output grid",
                                                                   menu(RESOLUTION_CHOICES), defaultValue=0)))
        self.addParameter(self.advanced(self.number(
            "DN_OFFSET", "DN offset [from the metadata]", None, optional=True)))
        self.addParameter(self.advanced(self.number(
            "QUANTIFICATION", "Quantification [from the metadata]", None,
            minimum=1e-9, optional=True)))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Limit to extent [whole image]", optional=True))

    def parameter_problem(self, parameters, context):
        """The contract's checks, then what the snow tools need: an image (a layer, a product folder or every
        band as a file)."""
        problem = super().parameter_problem(parameters, context)
        if problem or not self.ROLES:
            return problem
        files = [f"{BAND_PARAMETERS[role]}_FILE" for role in self.ROLES]
        if is_empty(parameters.get("INPUT")) and is_empty(parameters.get("SAFE")) and \
                any(is_empty(parameters.get(name)) for name in files):
            return (f"INPUT: choose a Sentinel-2 layer or a product folder (SAFE), or give every band as a file "
                    f"({', '.join(files)})")
        return None

    def image_name(self, parameters, context) -> str:
        """How the user knows the image: the layer's name, the product folder's, else the first band file's."""
        if not is_empty(parameters.get("SAFE")):
            return display_name(None, self.parameterAsFile(parameters, "SAFE", context))
        for name in ["INPUT"] + [f"{BAND_PARAMETERS[role]}_FILE" for role in self.ROLES]:
            if not is_empty(parameters.get(name)):
                layer = self.parameterAsRasterLayer(parameters, name, context)
                return display_name(layer, None if layer is not None else str(parameters.get(name)))
        return ""

    def output_name(self, what: str, parameters, context) -> str:
        """The name of an output layer: ``"<what> of <the image's name>"``."""
        name = self.image_name(parameters, context)
        return f"{what} of {name}" if name else what

    def optional_number(self, parameters, name, context):
        return None if parameters.get(name) in (None, "") else self.parameterAsDouble(parameters, name, context)

    def image(self, parameters, context, roles) -> Sentinel2Input:
        """The Sentinel-2 image of the parameters, its bands located, limited to the extent."""
        bands = {role: self.parameterAsInt(parameters, f"{BAND_PARAMETERS[role]}_BAND", context)
                 for role in roles if parameters.get(f"{BAND_PARAMETERS[role]}_BAND") not in (None, "")}
        files = {role: self.raster_file(parameters, f"{BAND_PARAMETERS[role]}_FILE", context, required=False)
                 for role in roles}
        choice = ImageChoice(
            layer=self.raster_file(parameters, "INPUT", context, required=False),
            folder=self.parameterAsFile(parameters, "SAFE", context) or None, bands=bands, files=files,
            offset=self.optional_number(parameters, "DN_OFFSET", context),
            quantification=self.optional_number(parameters, "QUANTIFICATION", context),
            resolution=key_at(RESOLUTION_CHOICES, self.parameterAsEnum(parameters, "RESOLUTION", context)))
        image = self.run_engine(lambda: sentinel2_input(choice, roles).located(roles), None)
        return image.within(self.extent(parameters, context, image.product))

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
    ROLES = NDSI_ROLES
    PARAMETER_HELP = {**S2_HELP, "OUTPUT": "The NDSI, a Float32 GeoTIFF (.tif), nodata -9999."}
    DISPLAY = "NDSI (normalized difference snow index)"
    HELP = ("<p>Normalized difference snow index of a Sentinel-2 image: <b>NDSI = (green - SWIR1) / "
            "(green + SWIR1)</b> with green = B3 (560 nm) and SWIR1 = B11 (1610 nm), on reflectance. Snow is bright "
            "in the green and dark in the SWIR: NDSI above about 0.4 is snow (or water, which the snow map's red "
            "test removes).</p>" + INPUT_HELP +
            "<p><b>Output</b>: Float32 GeoTIFF, nodata -9999 (nodata input, or green + SWIR1 not positive), "
            "styled with a brown-white-blue ramp.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_s2_parameters(NDSI_ROLES)
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "NDSI"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        request = ndsi_request(self.image(parameters, context, NDSI_ROLES),
                               self.parameterAsOutputLayer(parameters, "OUTPUT", context))
        output, _ = self.run_engine(lambda: compute_ndsi(request, self.monitor(feedback)), feedback)
        self.style_output(context, output, "ndsi", self.output_name("NDSI", parameters, context))
        return {"OUTPUT": output}


class SnowMapAlgorithm(SnowAlgorithm):
    NAME = "snowmap"
    ROLES = SNOW_MAP_ROLES
    PARAMETER_HELP = {**S2_HELP, **SNOW_MAP_HELP}
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
        "<p><b>Cloud mask</b> (from the same mask engine as cloud removal): the L2A scene classification (SCL: 3 "
        "shadow, 8 and 9 cloud, 10 cirrus are cloud; 0 is nodata), any mask raster (0 clear, 2 shadow, other "
        "values cloud, its nodata not cloud: TopoClear's cloud masks and any non-zero = cloud mask), the "
        "pretrained detector (ukis-csmask, Level-1C or Level-2A model from the product; on the 20 m grid it runs "
        "at 20 m, on the 10 m grid at 30 m; needs B2, B3, B4, B8 and the onnxruntime and ukis-csmask packages), "
        "or none. Let It Snow never releases shadow (SCL 3, or the shadow class of the detector and of mask "
        "rasters) or SCL cirrus: a shadow is not a cloud that can be snow. <i>Automatic</i> uses the raster "
        "given (read as SCL when its file name says SCL, as <tt>..._SCL_20m.jp2</tt>), else the SCL band found "
        "beside the product's bands (a SAFE folder or its band files), else the pretrained detector, else no "
        "mask; the log says which and why.</p>"
        "<p><b>Fractional snow cover</b> (optional output, Float32 0-1 on snow pixels, 0 on no-snow, nodata "
        "-9999 on cloud and nodata): Gascoin et al. (2020) 0.5 tanh(2.65 NDSI - 1.42) + 0.5, or Salomonson & "
        "Appel (2004) 1.45 NDSI - 0.01, clipped to [0, 1].</p>" + INPUT_HELP +
        "<p><b>Outputs</b>: the snow map (Byte GeoTIFF with a colour table) and the numbers SNOW_AREA_KM2, "
        "SNOW_PERCENT and CLOUD_PERCENT (of the valid area) and SNOWLINE (m; none when not found).</p>")

    def threshold_parameter(self, field: Threshold):
        if field.integer:
            return QgsProcessingParameterNumber(field.name, field.label, QgsProcessingParameterNumber.Integer,
                                                field.default, False, field.minimum, field.maximum)
        return self.number(field.name, field.label, field.default, field.minimum, field.maximum)

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_s2_parameters(SNOW_MAP_ROLES)
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Method", menu(METHOD_CHOICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (Let It Snow snowline)", optional=True))
        self.addParameter(self.advanced(QgsProcessingParameterBand("DEM_BAND", "Elevation band", 1, "DEM",
                                                                   optional=True)))
        self.addParameter(QgsProcessingParameterEnum("CLOUD_SOURCE", "Cloud mask", menu(CLOUD_CHOICES),
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUD_MASK", "Cloud mask or SCL raster", optional=True))
        # the default method's thresholds in view, the single threshold's under Advanced
        for field in LIS_FIELDS:
            self.addParameter(self.threshold_parameter(field))
        ndsi, red = THRESHOLD_FIELDS
        self.addParameter(self.advanced(self.threshold_parameter(ndsi)))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean("RED_TEST", "Single threshold: also test "
                                                                      "the red band", True)))
        self.addParameter(self.advanced(self.threshold_parameter(red)))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Snow map"))
        self.addParameter(QgsProcessingParameterRasterDestination("FSC", "Fractional snow cover", optional=True,
                                                                  createByDefault=False))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("FSC_FORMULA", "Fractional snow cover formula",
                                                                   menu(FSC_CHOICES), defaultValue=0)))
        for name, label in (("SNOW_AREA_KM2", "Snow area (km2)"), ("SNOW_PERCENT", "Snow (% of the valid area)"),
                            ("CLOUD_PERCENT", "Cloud (% of the valid area)"), ("SNOWLINE", "Snowline (m)")):
            self.addOutput(QgsProcessingOutputNumber(name, label))

    def parameter_problem(self, parameters, context):
        """The Sentinel-2 checks, then a cloud mask choice that needs a raster and has none."""
        problem = super().parameter_problem(parameters, context)
        if problem:
            return problem
        if is_empty(parameters.get("CLOUD_SOURCE")) or not is_empty(parameters.get("CLOUD_MASK")):
            return None
        index = self.parameterAsEnum(parameters, "CLOUD_SOURCE", context)
        if 0 <= index < len(CLOUD_CHOICES) and CLOUD_CHOICES[index].key == "raster":
            title = menu(CLOUD_CHOICES)[index]
            return (f"CLOUD_MASK: '{title}' was chosen as the cloud mask (CLOUD_SOURCE) but no raster was given: "
                    "choose the raster, or another cloud mask option")
        return None

    def choice(self, parameters, context) -> SnowMapChoice:
        """What the parameters ask for, as the snow tools' shared choice."""
        values = {f.key: (self.parameterAsInt if f.integer else self.parameterAsDouble)(parameters, f.name, context)
                  for f in THRESHOLD_FIELDS + LIS_FIELDS}
        wants_fsc = parameters.get("FSC") not in (None, "")
        fsc = self.parameterAsOutputLayer(parameters, "FSC", context) if wants_fsc else None
        return SnowMapChoice(
            image=self.image(parameters, context, SNOW_MAP_ROLES),
            output=self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            method=key_at(METHOD_CHOICES, self.parameterAsEnum(parameters, "METHOD", context)),
            values=values, red_test=self.parameterAsBoolean(parameters, "RED_TEST", context),
            dem=self.raster_file(parameters, "DEM", context, required=False),
            dem_band=self.parameterAsInt(parameters, "DEM_BAND", context) or 1,
            cloud=key_at(CLOUD_CHOICES, self.parameterAsEnum(parameters, "CLOUD_SOURCE", context)),
            cloud_raster=self.raster_file(parameters, "CLOUD_MASK", context, required=False),
            fsc_output=fsc or None,
            fsc_formula=key_at(FSC_CHOICES, self.parameterAsEnum(parameters, "FSC_FORMULA", context)))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        choice = self.choice(parameters, context)
        request, notes = self.run_engine(lambda: snow_map_request(choice), None)
        for note in notes:
            feedback.pushInfo(note)
        result = self.run_engine(lambda: snow_map(request, self.monitor(feedback)), feedback)
        if result.pass1_bands:
            feedback.pushInfo("Pass-1 elevation bands (m: total / snow / no snow / cloud pixels):")
            for band in result.pass1_bands:
                feedback.pushInfo(f"  {band.z_min:.0f}-{band.z_max:.0f}: {band.total} / {band.snow} / "
                                  f"{band.no_snow} / {band.cloud}")
        self.style_output(context, request.output, "snowmap", self.output_name("Snow map", parameters, context))
        outputs = {"OUTPUT": request.output, "SNOW_AREA_KM2": result.snow_area_km2,
                   "SNOW_PERCENT": result.snow_percent, "CLOUD_PERCENT": result.cloud_percent,
                   "SNOWLINE": result.snowline}
        if request.fsc_output:
            self.style_output(context, request.fsc_output, "fsc",
                              self.output_name("Fractional snow cover", parameters, context))
            outputs["FSC"] = request.fsc_output
        return outputs


class SnowStatsAlgorithm(SnowAlgorithm):
    NAME = "snowstats"
    PARAMETER_HELP = SNOW_STATS_HELP
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
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (for the elevation-band table)",
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
        request = self.run_engine(lambda: snow_statistics_request(
            self.raster_file(parameters, "INPUT", context),
            self.raster_file(parameters, "DEM", context, required=False),
            self.parameterAsInt(parameters, "BAND", context), self.parameterAsInt(parameters, "DEM_BAND", context),
            self.parameterAsInt(parameters, "BAND_HEIGHT", context)), None)
        stats = self.run_engine(lambda: snow_statistics(request, self.monitor(feedback)), feedback)
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
