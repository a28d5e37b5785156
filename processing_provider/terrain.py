"""Terrain algorithms: slope, aspect, hillshade and the aligned terrain stack."""
from __future__ import annotations

from qgis.core import (QgsProcessingException, QgsProcessingParameterBand, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum, QgsProcessingParameterFile, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer)

from ..engine.sentinel2.metadata import SunAngles, read_sun_angles
from ..engine.terrain.derivatives import (DEFAULT_SUN, EDGE_MODES, MAX_Z_FACTOR, SLOPE_UNITS, TerrainOptions,
                                          compute_terrain)
from ..engine.terrain.stack import RESAMPLING_METHODS, terrain_stack
from ..qgis_common.layers import display_name
from .base import TopoClearAlgorithm

EDGE_HELP = (
    "<p><b>Edges and nodata</b>: <i>QGIS-like</i> (default) fills the raster border and cells next to "
    "nodata with one-sided differences, as QGIS does; <i>GDAL-like</i> writes nodata wherever the 3x3 "
    "window touches nodata or the raster edge, as gdaldem does. In both modes a nodata DEM cell gives "
    "a nodata output cell.</p>"
    "<p>Gradients use Horn's 3x3 method. DEMs in a geographic CRS (degrees) are handled: horizontal "
    "distances are converted to metres row by row, so results are true degrees. The z-factor multiplies "
    "elevations (use it when elevation units differ from metres). The DEM is processed in windows, "
    "so rasters of any size work with little memory.</p>"
)
RESAMPLING_NAMES = list(RESAMPLING_METHODS)
EDGE_LABELS = ["QGIS-like (one-sided at edges)", "GDAL-like (nodata at edges)"]
#: Tooltip help of the parameters (QGIS shows it over the label, where it supports parameter help).
PARAMETER_HELP = {
    "INPUT": "The elevation raster, in any CRS and resolution. DEMs in degrees are handled: horizontal "
             "distances are converted to metres row by row. Nodata cells give nodata.",
    "BAND": "The band of the DEM holding the elevations (default: band 1).",
    "Z_FACTOR": "Multiplies the elevations before the gradients: 1 when elevations and horizontal units are "
                f"both metres; e.g. 0.3048 for elevations in feet. Larger values exaggerate the relief "
                f"(at most {MAX_Z_FACTOR:g}).",
    "EDGE_MODE": "QGIS-like fills the raster border and the cells beside nodata with one-sided differences, "
                 "as QGIS does; GDAL-like writes nodata wherever the 3x3 window is incomplete (it touches "
                 "nodata or the raster edge), as gdaldem does.",
    "OUTPUT_NODATA": "The value written where the result is unknown (nodata DEM cells, and edges in GDAL-like "
                     "mode).",
    "METADATA": "A Sentinel-2 MTD_TL.xml, or the product's .SAFE folder typed as a path: the relief is lit by the "
                "scene's mean sun (zenith and azimuth of the tile). Empty: the azimuth and zenith below.",
    "AZIMUTH": "Direction the light comes from, degrees clockwise from north (315 = north-west). Used when no "
               "metadata is given.",
    "ZENITH": "Angle of the sun from the vertical, degrees (altitude = 90 - zenith). Used when no metadata is "
              "given, and by the multidirectional mode.",
    "MULTIDIRECTIONAL": "Blend lights from 225, 270, 315 and 360 degrees, each weighted by how squarely it meets "
                        "the slope (as gdaldem -multidirectional), at the zenith angle above.",
    "UNITS": "Degrees (0-90) or percent (100 x rise / run).",
    "FLAT_VALUE": "The aspect written for flat cells (no downslope direction); empty: nodata.",
    "REFERENCE": "The raster the stack is aligned to, normally the Sentinel-2 scene to be cleared: its CRS, "
                 "extent and pixel size make the stack's grid.",
    "RESAMPLING": "How slope, aspect (through its sine and cosine), hillshade and elevation computed on the "
                  "DEM's grid are resampled onto the reference grid.",
    "MIN_COVERAGE": "Refuse a DEM covering less than this share of the reference extent (0: any overlap is "
                    "enough; uncovered cells are nodata).",
    "OUTPUT": "A GeoTIFF (.tif); TopoClear never overwrites an input.",
}


class TerrainAlgorithm(TopoClearAlgorithm):
    GROUP = "Terrain"
    GROUP_ID = "terrain"

    PARAMETER_HELP = PARAMETER_HELP

    def add_dem_parameters(self):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "DEM (elevation raster)"))
        self.addParameter(QgsProcessingParameterBand("BAND", "Elevation band", 1, "INPUT", optional=True))
        self.addParameter(self.number("Z_FACTOR", "Z-factor (vertical exaggeration or unit conversion)", 1.0,
                                      minimum=1e-9, maximum=MAX_Z_FACTOR))
        self.addParameter(self.advanced(QgsProcessingParameterEnum("EDGE_MODE", "Edges and nodata", EDGE_LABELS,
                                                                   defaultValue=0)))
        self.addParameter(self.advanced(self.number("OUTPUT_NODATA", "Output nodata value", -9999.0)))

    def add_sun_parameters(self, metadata_label: str):
        self.addParameter(QgsProcessingParameterFile(
            "METADATA", metadata_label, optional=True,
            fileFilter="Sentinel-2 metadata (MTD_TL.xml MTD_MSIL1C.xml MTD_MSIL2A.xml);;All files (*)"))
        self.addParameter(self.number("AZIMUTH", "Sun azimuth, degrees from north (without metadata)",
                                      DEFAULT_SUN.azimuth, 0.0, 360.0))
        self.addParameter(self.number("ZENITH", "Sun zenith, degrees from vertical (without metadata)",
                                      DEFAULT_SUN.zenith, 0.0, 90.0))

    def output_name(self, what: str, parameters, context, dem: str) -> str:
        """The name of the output layer: ``"<what> of <the DEM's name>"``."""
        name = display_name(self.parameterAsRasterLayer(parameters, "INPUT", context), dem)
        return f"{what} of {name}" if name else what

    def sun_angles(self, parameters, context, feedback) -> SunAngles:
        metadata = self.parameterAsFile(parameters, "METADATA", context)
        if metadata:
            sun = self.run_engine(lambda: read_sun_angles(metadata), feedback)
            feedback.pushInfo(f"Sun from {sun.source}: zenith {sun.zenith:.3f} deg, azimuth {sun.azimuth:.3f} deg")
            return sun
        return SunAngles(zenith=self.parameterAsDouble(parameters, "ZENITH", context),
                         azimuth=self.parameterAsDouble(parameters, "AZIMUTH", context), source="parameters")

    def options(self, parameters, context, **extra) -> TerrainOptions:
        return self.run_engine(lambda: TerrainOptions(
            z_factor=self.parameterAsDouble(parameters, "Z_FACTOR", context),
            edge_mode=EDGE_MODES[self.parameterAsEnum(parameters, "EDGE_MODE", context)],
            nodata=self.parameterAsDouble(parameters, "OUTPUT_NODATA", context), **extra), None)

    def run_single(self, product: str, style: str, parameters, context, feedback, **extra):
        dem = self.raster_file(parameters, "INPUT", context)
        band = self.parameterAsInt(parameters, "BAND", context) or 1
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        options = self.options(parameters, context, **extra)
        self.run_engine(lambda: compute_terrain(dem, {product: output}, band, options, self.monitor(feedback)),
                        feedback)
        self.style_output(context, output, style, self.output_name(product.capitalize(), parameters, context, dem))
        return {"OUTPUT": output}


class SlopeAlgorithm(TerrainAlgorithm):
    NAME = "slope"
    DISPLAY = "Slope"
    HELP = ("<p>Slope of a DEM in degrees (0-90) or percent (100 x rise/run).</p>"
            "<p><b>Output</b>: Float32 GeoTIFF on the DEM's grid, styled with a slope colour ramp.</p>" + EDGE_HELP)

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_dem_parameters()
        self.addParameter(QgsProcessingParameterEnum("UNITS", "Slope units", ["degrees", "percent"], defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Slope"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        units = SLOPE_UNITS[self.parameterAsEnum(parameters, "UNITS", context)]
        return self.run_single("slope", f"slope_{units}", parameters, context, feedback, slope_units=units)


class AspectAlgorithm(TerrainAlgorithm):
    NAME = "aspect"
    DISPLAY = "Aspect"
    HELP = ("<p>Aspect of a DEM: the compass direction the slope faces (downslope), in degrees clockwise "
            "from north (0 = north, 90 = east, 180 = south, 270 = west).</p>"
            "<p>Flat cells have no aspect: they are nodata unless <i>Value for flat cells</i> is set.</p>"
            "<p><b>Output</b>: Float32 GeoTIFF on the DEM's grid, styled with a circular colour ramp.</p>"
            + EDGE_HELP)

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_dem_parameters()
        self.addParameter(self.advanced(self.number("FLAT_VALUE", "Value for flat cells (empty: nodata)", None,
                                                    optional=True)))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Aspect"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        flat = parameters.get("FLAT_VALUE")
        flat_value = None if flat in (None, "") else self.parameterAsDouble(parameters, "FLAT_VALUE", context)
        return self.run_single("aspect", "aspect", parameters, context, feedback, flat_aspect=flat_value)


class HillshadeAlgorithm(TerrainAlgorithm):
    NAME = "hillshade"
    DISPLAY = "Hillshade"
    HELP = ("<p>Shaded relief of a DEM, 0 (in shadow or facing away) to 255 (facing the sun): "
            "255 x cos(angle between the surface normal and the sun).</p>"
            "<p><b>Sun</b>: choose a Sentinel-2 <i>MTD_TL.xml</i> (or the product's .SAFE folder, typed as a path) "
            "to light the relief exactly as the scene was lit (mean sun zenith and azimuth of the tile), or give "
            "the sun azimuth (degrees clockwise from north) and zenith angle (degrees from vertical; "
            "altitude = 90 - zenith). Defaults: azimuth 315, zenith 45.</p>"
            "<p><b>Multidirectional</b> blends lights from 225, 270, 315 and 360 degrees (as gdaldem "
            "-multidirectional), using the zenith angle above.</p>"
            "<p><b>Output</b>: Float32 GeoTIFF on the DEM's grid, shown in grey.</p>" + EDGE_HELP)

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_dem_parameters()
        self.add_sun_parameters("Sun from Sentinel-2 metadata")
        self.addParameter(QgsProcessingParameterBoolean("MULTIDIRECTIONAL",
                                                        "Multidirectional (lights from 225, 270, 315, 360°)", False))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Hillshade"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        sun = self.sun_angles(parameters, context, feedback)
        multi = self.parameterAsBoolean(parameters, "MULTIDIRECTIONAL", context)
        return self.run_single("hillshade", "hillshade", parameters, context, feedback, sun=sun,
                               multidirectional=multi)


class TerrainStackAlgorithm(TerrainAlgorithm):
    NAME = "terrainstack"
    DISPLAY = "Terrain stack aligned to a scene"
    HELP = ("<p>Builds the terrain input of terrain-aware cloud removal: one GeoTIFF with four Float32 bands "
            "<b>1 elevation</b>, <b>2 slope</b> (degrees), <b>3 aspect</b> (degrees clockwise from north) and "
            "<b>4 hillshade</b> (0-255).</p>"
            "<p>Slope, aspect and hillshade are computed on the DEM's own grid, then resampled onto the grid of "
            "the <b>reference raster</b> (normally the Sentinel-2 scene to be cleared: its CRS, extent and pixel "
            "size). Aspect is resampled through its sine and cosine. The DEM may be in any CRS and resolution. "
            "Reference cells outside the DEM are nodata; a DEM that does not overlap the reference is an error, "
            "and <i>Minimum DEM coverage</i> can refuse partial coverage.</p>"
            "<p>The hillshade is lit by the scene's own sun when its metadata (MTD_TL.xml or .SAFE folder) is "
            "given, otherwise by the azimuth and zenith below.</p>" + EDGE_HELP)

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_dem_parameters()
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference raster (the Sentinel-2 scene)"))
        self.add_sun_parameters("Sun from the scene's metadata")
        self.addParameter(QgsProcessingParameterEnum("RESAMPLING", "Resampling onto the reference grid",
                                                     RESAMPLING_NAMES, defaultValue=RESAMPLING_NAMES.index("bilinear")))
        self.addParameter(self.advanced(self.number("MIN_COVERAGE", "Minimum DEM coverage of the reference (%)",
                                                    0.0, 0.0, 100.0)))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Terrain stack"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        dem = self.raster_file(parameters, "INPUT", context)
        reference = self.raster_file(parameters, "REFERENCE", context)
        band = self.parameterAsInt(parameters, "BAND", context) or 1
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        options = self.options(parameters, context, sun=self.sun_angles(parameters, context, feedback))
        resampling = RESAMPLING_NAMES[self.parameterAsEnum(parameters, "RESAMPLING", context)]
        coverage = self.parameterAsDouble(parameters, "MIN_COVERAGE", context) / 100.0
        if not output.lower().endswith((".tif", ".tiff")):
            raise QgsProcessingException(f"OUTPUT: the terrain stack is written as GeoTIFF; got {output}")
        self.run_engine(lambda: terrain_stack(dem, reference, output, band, options, resampling,
                                              self.monitor(feedback), min_coverage=coverage), feedback)
        self.style_output(context, output, "terrain_stack", self.output_name("Terrain stack", parameters, context, dem))
        return {"OUTPUT": output}
