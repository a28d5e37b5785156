"""Cloud-removal training data: ``topoclear:builddataset`` (aligned 256 x 256 patch stacks + manifest)."""
from __future__ import annotations

import os

from qgis.core import (QgsProcessingException, QgsProcessingOutputFile, QgsProcessingOutputNumber,
                       QgsProcessingParameterBoolean, QgsProcessingParameterFile,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString)

from ..engine.training.builder_inputs import BuildOptions, SceneInputs
from ..engine.training.dataset_builder import build_dataset
from ..engine.training.scene_list import add_missing_masks, load_scene_list
from .base import TopoClearAlgorithm

OPTIONAL_RASTERS = (
    ("S1", "s1", "Sentinel-1 VV, VH in dB on the same grid [optional]"),
    ("TERRAIN", "terrain", "Terrain stack on the same grid (from 'Terrain stack aligned to a scene') [optional]"),
    ("CLOUD_MASK", "cloud_mask", "Cloud mask, 1 = cloud [optional]"),
    ("SHADOW_MASK", "shadow_mask", "Cloud-shadow mask, 1 = shadow [optional]"),
    ("LAND_MASK", "land_mask", "Land mask, non-zero = land (patches must be all land) [optional]"),
)


class BuildDatasetAlgorithm(TopoClearAlgorithm):
    NAME = "builddataset"
    DISPLAY = "Build cloud-removal training patches"
    GROUP = "Cloud removal training"
    GROUP_ID = "cloudtraining"
    HELP = (
        "<p>Cuts aligned <b>256 x 256 patch stacks</b> (cloudy Sentinel-2, its cloud-free target and, when given, "
        "Sentinel-1, the terrain stack and cloud / shadow masks) from your scenes and splits them into "
        "<b>train / validation / test</b>, following CRT-UNet's rules. The output folder holds the patches and a "
        "<b>manifest.json</b> that <i>Train cloud-removal model</i> reads directly.</p>"
        "<p><b>Input</b>: one scene from the layers below, all on the Sentinel-2 grid (same CRS, extent and pixel "
        "size: resample S1 and the DEM first, e.g. with <i>Terrain stack aligned to a scene</i>), or several scenes "
        "listed in a <b>scene list</b> (CSV with the header <tt>name,cloudy,target,s1,terrain,cloud_mask,"
        "shadow_mask,land_mask,group,source,split</tt>, any subset with <tt>cloudy</tt> and <tt>target</tt>; "
        "relative paths are relative to the list). Sentinel-2 in reflectance x 10000; band names come from the "
        "band descriptions or the band count (13: L1C order, 12: L2A, 10: B2-B8A, B11, B12).</p>"
        "<p><b>Rules</b>: patches on a regular lattice, never overlapping; a patch is kept only if every pixel of "
        "every stack holds data (land only: with a land mask, every pixel must be land; <i>Maximum open water</i> "
        "also refuses patches with more water, NDWI &gt; 0.2 and NIR &lt; 0.15 on the clear image; CRT-UNet keeps "
        "100 % land, i.e. 0). Patches are grouped in square <b>spatial blocks</b> and whole blocks go to one split "
        "(80 / 15 / 5 % by default), balanced within each source; scenes of the same ground (overlapping "
        "footprints or the same <tt>group</tt>) share the blocks, so no patch of one split overlaps another "
        "split. The same seed gives the same split.</p>"
        "<p><b>Masks</b>: without masks, a Level-1C scene (13 bands, with B1 and B10) gets cloud and shadow masks "
        "from DSen2-CR's detectors when <i>Compute missing masks</i> is ticked.</p>"
        "<p><b>Outputs</b>: the folder (<tt>s2_cloudy/</tt>, <tt>s2_clear/</tt>, <tt>s1/</tt>, <tt>terrain/</tt>, "
        "<tt>masks/</tt>, <tt>manifest.json</tt>), the manifest path, and the patch counts per split. Each manifest "
        "entry records the patch's scene, window, block, footprint and cloud cover.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUDY", "Cloudy Sentinel-2 image", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("CLEAR", "Cloud-free Sentinel-2 target (same grid)",
                                                            optional=True))
        for key, _, label in OPTIONAL_RASTERS:
            self.addParameter(QgsProcessingParameterRasterLayer(key, label, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "SCENES", "...or a scene list (CSV or JSON) [optional]", optional=True,
            fileFilter="Scene lists (*.csv *.json);;All files (*)"))
        self.addParameter(QgsProcessingParameterString("SCENE_NAME", "Scene name (prefix of patch ids) [file name]",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString("SOURCE", "Source label of the scene(s)", "user scenes"))
        self.addParameter(QgsProcessingParameterBoolean("COMPUTE_MASKS", "Compute missing masks (Level-1C scenes)",
                                                        True))
        self.addParameter(QgsProcessingParameterNumber("PATCH_SIZE", "Patch size (px)",
                                                       QgsProcessingParameterNumber.Integer, 256, False, 16, 4096))
        self.addParameter(self.number("TRAIN", "Training share (%)", 80.0, 0.0, 100.0))
        self.addParameter(self.number("VAL", "Validation share (%)", 15.0, 0.0, 100.0))
        self.addParameter(self.number("TEST", "Test share (%)", 5.0, 0.0, 100.0))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "BLOCK_PATCHES", "Spatial block side (patches)", QgsProcessingParameterNumber.Integer, 2, False, 1, 64)))
        self.addParameter(self.advanced(self.number("MAX_WATER", "Maximum open water per patch (%) [no test]", None,
                                                    0.0, 100.0, optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "SEED", "Random seed of the split", QgsProcessingParameterNumber.Integer, 0, False, 0)))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean("COMPRESS", "Compress patches (DEFLATE)",
                                                                      True)))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputFile("MANIFEST", "Manifest"))
        for key, label in (("PATCHES", "Patches"), ("TRAIN_PATCHES", "Training patches"),
                           ("VAL_PATCHES", "Validation patches"), ("TEST_PATCHES", "Test patches")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def scenes(self, parameters, context):
        source = self.parameterAsString(parameters, "SOURCE", context) or "user scenes"
        listing = self.parameterAsFile(parameters, "SCENES", context)
        cloudy = self.raster_file(parameters, "CLOUDY", context, required=False)
        if listing:
            if cloudy:
                raise QgsProcessingException("Give either a scene list or the scene's layers, not both")
            scenes = self.run_engine(lambda: load_scene_list(listing), None)
            for s in scenes:
                if s.source == "custom":
                    s.source = source
            return scenes
        clear = self.raster_file(parameters, "CLEAR", context, required=False)
        if not cloudy or not clear:
            raise QgsProcessingException("Give the cloudy image and its cloud-free target (or a scene list)")
        name = (self.parameterAsString(parameters, "SCENE_NAME", context)
                or os.path.splitext(os.path.basename(cloudy))[0])
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        extra = {attr: self.raster_file(parameters, key, context, required=False) for key, attr, _ in OPTIONAL_RASTERS}
        return [SceneInputs(name=name, cloudy=cloudy, target=clear, source=source,
                            **{k: v for k, v in extra.items() if v})]

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        scenes = self.scenes(parameters, context)
        output = self.parameterAsString(parameters, "OUTPUT", context)
        if not output:
            raise QgsProcessingException("OUTPUT: choose an output folder")
        os.makedirs(output, exist_ok=True)
        max_water = parameters.get("MAX_WATER")
        max_water = None if max_water in (None, "") else self.parameterAsDouble(parameters, "MAX_WATER", context) / 100
        fractions = tuple(self.parameterAsDouble(parameters, k, context) for k in ("TRAIN", "VAL", "TEST"))
        options = self.run_engine(lambda: BuildOptions(
            patch_size=self.parameterAsInt(parameters, "PATCH_SIZE", context), fractions=fractions,
            block_patches=self.parameterAsInt(parameters, "BLOCK_PATCHES", context),
            seed=self.parameterAsInt(parameters, "SEED", context), max_water_fraction=max_water,
            compress=self.parameterAsBoolean(parameters, "COMPRESS", context),
            description=f"patches cut by topoclear:builddataset from {len(scenes)} scene(s)"), feedback)
        monitor = self.monitor(feedback)
        if self.parameterAsBoolean(parameters, "COMPUTE_MASKS", context):
            self.run_engine(lambda: add_missing_masks(scenes, os.path.join(output, "scene_masks"),
                                                      monitor.sub(0, 20)), feedback)
        summary = self.run_engine(lambda: build_dataset(scenes, output, options, monitor.sub(20, 100)), feedback)
        for line in summary.text().splitlines():
            feedback.pushInfo(line)
        if summary.total == 0:
            feedback.reportError("No patch was kept: check the rejection reasons above (nodata, water, land mask, "
                                 "scenes smaller than a patch).")
        per_split = {s: sum(c.get(s, 0) for c in summary.counts.values()) for s in ("train", "val", "test")}
        return {"OUTPUT": output, "MANIFEST": summary.manifest, "PATCHES": summary.total,
                "TRAIN_PATCHES": per_split["train"], "VAL_PATCHES": per_split["val"],
                "TEST_PATCHES": per_split["test"]}
