"""topoclear:cloudmask: the cloud and shadow mask of a whole Sentinel-2 scene, as a class raster.

The algorithm declares its parameters and delegates to the mask engine
(:func:`topoclear.engine.clouds.masks.run.run_cloud_mask`), which also serves cloud removal. The
method menu is generated from :mod:`topoclear.engine.clouds.masks.kinds`. Needs neither PyTorch nor
``onnxruntime`` to load: without the detector packages the automatic method uses the DSen2-CR rules
and the log says how to install the detector.
"""
from __future__ import annotations

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingOutputString, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum, QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString)

from ..engine.clouds.masks.detector import INSTALL_HINT
from ..qgis_common.cloud_choices import LEVEL_CHOICES, ChoiceError, keys, mask_choices, parse_band_list
from ..qgis_common.layers import display_name
from .base import TopoClearAlgorithm

HELP = (
    "<p>Finds the <b>clouds and cloud shadows</b> of a whole Sentinel-2 scene and writes them as a Byte GeoTIFF "
    "on the scene's grid: <b>0 clear, 1 cloud, 2 cloud shadow, 255 nodata</b>. The mask opens styled: clouds "
    "white, shadows dark, clear pixels transparent so the image shows through. Use it to check a scene before "
    "cloud removal or snow mapping, or give it to <i>Remove clouds</i> (method <i>Cloud mask raster</i>) so both "
    "use the same mask.</p>"
    "<p><b>Methods</b>:</p><ul>"
    "<li><b>Automatic</b> (default): the mask raster when one is given (as SCL when its file name says SCL), else "
    "the product's own SCL band (Level-2A SAFE folders and band files beside an SCL), else the pretrained "
    "detector, else the DSen2-CR rules (Level-1C bands with B1 and B10). The log says which method ran and why.</li>"
    "<li><b>Pretrained detector (ukis-csmask)</b>: a deep network (DLR; UNet, EfficientNet-B4 encoder, trained on "
    "SPARCS and CloudSEN12+) that finds clouds <i>and</i> shadows and keeps snow and bright ground clear. The "
    "Level-1C or Level-2A model is chosen from the product: its metadata, else its name (MSIL1C / MSIL2A), else "
    "an SCL band (L2A), else B10 (only Level-1C has it: 13-band stacks), else the 12-band stack layout (L2A), "
    "else Level-1C; <i>Product level</i> (advanced) forces one. The 6-band model needs B2, B3, B4, B8, B11, B12 "
    "(the 4-band model B2, B3, B4, B8 only). The scene is averaged to about 30 m, where the network works best, "
    "and the classes come back to the native grid by nearest neighbour; <i>Detector resolution</i> 0 runs it "
    "at the native resolution (finer edges, more false cloud at 10 m). It needs the Python packages onnxruntime "
    f"and ukis-csmask: <tt>{INSTALL_HINT}</tt>, or Plugins &gt; TopoClear &gt; Install dependencies...; an "
    "NVIDIA GPU is used when onnxruntime-gpu is installed.</li>"
    "<li><b>SCL scene classification</b>: the Sen2Cor classes of Level-2A products: 8 and 9 cloud, 10 (thin "
    "cirrus) cloud unless unticked, 3 shadow unless unticked, 0 nodata; the given raster or the product's SCL.</li>"
    "<li><b>DSen2-CR rules</b>: the rule-based cloud score (threshold 0.2) and Zhai shadow test of DSen2-CR on "
    "Level-1C bands (needs B1 and B10). Fast and dependency-free, but it often calls snow, bright ground and "
    "dark ground (water, shade) cloud or shadow.</li>"
    "<li><b>Cloud mask raster</b>: a raster you give, read as: <b>0 clear, 2 shadow, any other value cloud, the "
    "raster's declared nodata no data</b> (pixels outside it: nodata). A mask from this tool reads back as it "
    "was written; a binary mask (0 / non-zero) reads as clear / cloud.</li></ul>"
    "<p><b>Buffer</b> (metres): clear pixels within this distance of a cloud become cloud, else within it of a "
    "shadow become shadow; cloud edges and thin margins are often missed, 30-100 m is a common choice before "
    "cloud removal.</p>"
    "<p><b>Sentinel-2 input</b>: a band stack (13-band L1C, 12-band L2A, 10-band; band descriptions naming the "
    "bands win over the count), one band file of a product whose bands are separate files, or a product folder "
    "(.SAFE). <i>Sentinel-2 band order</i> (advanced) overrides the detection, e.g. <tt>B2,B3,B4,B8,B11,B12</tt>. "
    "Geographic "
    "grids (EPSG:4326) work: the pixel size in metres is taken at the scene's centre latitude. Whole tiles are "
    "processed window by window in bounded memory (a 10980 x 10980 tile: under 1 GB).</p>"
    "<p><b>Outputs</b>: the mask, CLOUD_PERCENT and SHADOW_PERCENT (of the valid pixels) and METHOD_USED.</p>")


#: Tooltip help of the cloudmask parameters.
MASK_HELP = {
    "INPUT": "A band stack (13, 12 or 10 bands) or one band file of a product whose bands are separate files.",
    "SAFE": "Instead of a layer: a Sentinel-2 product folder (.SAFE), its bands found inside.",
    "METHOD": "How clouds are found; Automatic: the mask raster, else SCL, else the detector, else the rules.",
    "MASK": "Read by Automatic, SCL and Cloud mask raster: an SCL band, or 0 clear / 2 shadow / other cloud.",
    "BUFFER": "Clear pixels this close (m) to a cloud or shadow become cloud or shadow (30-100 m is common).",
    "SCL_CIRRUS": "SCL class 10 (thin cirrus) counts as cloud.",
    "SCL_SHADOW": "SCL class 3 (cloud shadow) counts as shadow.",
    "PRODUCT_LEVEL": "The detector's Level-1C or Level-2A model; Automatic: from the product.",
    "RESOLUTION": "The detector works best at about 30 m; 0 runs it at the image's own resolution.",
    "THREADS": "CPU threads of the detector (0 = all cores).",
    "BANDS": "The Sentinel-2 band of each input band, in order (e.g. B2,B3,B4,B8,B11,B12; - skips one).",
    "OUTPUT": "A Byte GeoTIFF: 0 clear, 1 cloud, 2 cloud shadow, 255 nodata; never an input.",
}


class CloudMaskAlgorithm(TopoClearAlgorithm):
    NAME = "cloudmask"
    DISPLAY = "Cloud and shadow mask (Sentinel-2)"
    GROUP = "Clouds"
    GROUP_ID = "clouds"
    HELP = HELP
    TAGS = ("cloud mask", "shadow", "scl", "ukis-csmask", "detector", "fmask")

    PARAMETER_HELP = MASK_HELP

    def initAlgorithm(self, config=None):  # noqa: N802
        methods = mask_choices("cloudmask")
        self.method_keys = keys(methods)
        self.addParameter(QgsProcessingParameterRasterLayer(
            "INPUT", "Sentinel-2 image", optional=True))
        self.addParameter(QgsProcessingParameterFile("SAFE", "...or a Sentinel-2 product folder (.SAFE)",
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            "METHOD", "Method", [m.label for m in methods], defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "MASK", "Mask raster (SCL band or a cloud mask)", optional=True))
        self.addParameter(self.number("BUFFER", "Buffer around clouds and shadows (m)", 0.0, 0.0, 10000.0))
        self.addParameter(QgsProcessingParameterBoolean("SCL_CIRRUS", "SCL: thin cirrus (class 10) counts as cloud",
                                                        True))
        self.addParameter(QgsProcessingParameterBoolean("SCL_SHADOW", "SCL: cloud shadow (class 3) counts as shadow",
                                                        True))
        self.addParameter(self.advanced(QgsProcessingParameterEnum(
            "PRODUCT_LEVEL", "Detector: product level", [c.label.split(" (")[0] for c in LEVEL_CHOICES],
            defaultValue=0)))
        self.addParameter(self.advanced(self.number(
            "RESOLUTION", "Detector resolution (m; 0 = the image's own)", 30.0, 0.0, 1000.0)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "THREADS", "Detector: CPU threads (0 = all cores)", QgsProcessingParameterNumber.Integer, 0, False, 0,
            256)))
        self.addParameter(self.advanced(QgsProcessingParameterString(
            "BANDS", "Sentinel-2 band order (empty = detected)", "", optional=True)))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Cloud mask"))
        self.addOutput(QgsProcessingOutputNumber("CLOUD_PERCENT", "Cloud (% of the valid pixels)"))
        self.addOutput(QgsProcessingOutputNumber("SHADOW_PERCENT", "Cloud shadow (% of the valid pixels)"))
        self.addOutput(QgsProcessingOutputString("METHOD_USED", "Method used"))

    def request(self, parameters, context):
        """The engine request of the parameters; :class:`ChoiceError` naming the parameter at fault."""
        from ..engine.clouds.masks.run import CloudMaskRequest

        s2 = self.parameterAsFile(parameters, "SAFE", context) or self.raster_file(parameters, "INPUT", context,
                                                                                    required=False)
        if not s2:
            raise ChoiceError("INPUT", "INPUT: choose a Sentinel-2 layer or a product folder (SAFE)")
        index = self.parameterAsEnum(parameters, "METHOD", context)
        if not 0 <= index < len(self.method_keys):
            raise ChoiceError("METHOD", f"METHOD: {index} is not one of 0..{len(self.method_keys) - 1}")
        level_index = self.parameterAsEnum(parameters, "PRODUCT_LEVEL", context)
        level = LEVEL_CHOICES[level_index].key if 0 <= level_index < len(LEVEL_CHOICES) else None
        bands = self.parameterAsString(parameters, "BANDS", context)
        resolution = self.parameterAsDouble(parameters, "RESOLUTION", context)
        return CloudMaskRequest(
            s2=s2, output=self.parameterAsOutputLayer(parameters, "OUTPUT", context), method=self.method_keys[index],
            mask=self.raster_file(parameters, "MASK", context, required=False),
            buffer_m=self.parameterAsDouble(parameters, "BUFFER", context),
            scl_cirrus=self.parameterAsBoolean(parameters, "SCL_CIRRUS", context),
            scl_shadow=self.parameterAsBoolean(parameters, "SCL_SHADOW", context), product_level=level,
            resolution_m=resolution or None, threads=self.parameterAsInt(parameters, "THREADS", context) or None,
            s2_overrides=parse_band_list(bands) if bands.strip() else None)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..engine.clouds.masks.run import run_cloud_mask

        request = self.run_engine(lambda: self.request(parameters, context), feedback)
        report = self.run_engine(lambda: run_cloud_mask(request, self.monitor(feedback)), feedback)
        for line in report.summary().splitlines():
            feedback.pushInfo(line)
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context) if not self.parameterAsFile(
            parameters, "SAFE", context) else None
        name = display_name(layer, None if layer is not None else request.s2)
        self.style_output(context, request.output, "cloudmask", f"Cloud mask of {name}" if name else "Cloud mask")
        return {"OUTPUT": request.output, "CLOUD_PERCENT": report.cloud_percent,
                "SHADOW_PERCENT": report.shadow_percent, "METHOD_USED": report.method}
