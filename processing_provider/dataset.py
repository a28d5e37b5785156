"""Cloud-removal training data: ``topoclear:builddataset`` (aligned 256 x 256 patch stacks + manifest)."""
from __future__ import annotations

import os
from typing import Optional

from qgis.core import (QgsProcessingException, QgsProcessingOutputFile, QgsProcessingOutputNumber,
                       QgsProcessingParameterBoolean, QgsProcessingParameterFile,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString)

from ..engine.errors import TopoClearError
from ..engine.training.builder_inputs import BuildOptions, SceneInputs
from ..engine.training.dataset_builder import build_dataset_folder, output_folder_problem
from ..engine.training.scene_list import check_scene_name, load_scene_list
from .base import TopoClearAlgorithm
from .checks import is_empty

#: Optional rasters of a single scene: parameter, SceneInputs attribute, label.
OPTIONAL_RASTERS = (
    ("S1", "s1", "Sentinel-1 VV, VH (dB, same grid)"),
    ("TERRAIN", "terrain", "Terrain stack (same grid)"),
    ("CLOUD_MASK", "cloud_mask", "Cloud mask (1 = cloud)"),
    ("SHADOW_MASK", "shadow_mask", "Cloud-shadow mask (1 = shadow)"),
    ("LAND_MASK", "land_mask", "Land mask (non-zero = land)"),
)

#: What the tick box replacing an existing dataset is called (in the messages that point to it).
OVERWRITE_HINT = "tick 'Replace an existing dataset' (OVERWRITE)"

#: Tooltip help of each parameter.
PARAMETER_HELP = {
    "CLOUDY": "The cloudy Sentinel-2 image of one scene, in reflectance x 10000. Band names come from its band "
              "descriptions or its band count (13: Level-1C order, 12: Level-2A, 10: B2-B8A, B11, B12). Leave "
              "empty when you give a scene list.",
    "CLEAR": "The cloud-free Sentinel-2 image of the same ground: same grid (CRS, extent, pixel size) and the "
             "same bands as the cloudy image.",
    "S1": "Sentinel-1 backscatter, VV then VH in dB, resampled onto the Sentinel-2 grid.",
    "TERRAIN": "The four-band terrain stack (elevation, slope, aspect, hillshade) on the Sentinel-2 grid, as "
               "written by 'Terrain stack aligned to a scene'.",
    "CLOUD_MASK": "Single-band raster, 1 (or any non-zero value) on cloud, on the Sentinel-2 grid. Without masks, "
                  "Level-1C scenes get computed ones (Compute missing masks).",
    "SHADOW_MASK": "Single-band raster, 1 (or any non-zero value) on cloud shadow, on the Sentinel-2 grid.",
    "LAND_MASK": "Non-zero on land: a patch is kept only if every pixel is land (CRT-UNet keeps land only).",
    "SCENES": "Several scenes at once: a CSV with the header name,cloudy,target,s1,terrain,cloud_mask,"
              "shadow_mask,land_mask,group,source,split (any subset with cloudy and target), or a JSON list of "
              "objects with those keys. Relative paths are relative to the list. Scene names become file names: "
              "letters, digits, '-', '_' and '.', no path.",
    "SCENE_NAME": "The prefix of the patch ids of the scene (default: the cloudy image's file name). Letters, "
                  "digits, '-', '_' and '.'; a name holding '/', '\\' or '..' is refused.",
    "SOURCE": "The stratum the split is balanced in and the 'source' of the manifest's samples (e.g. real pair, "
              "synthetic clouds).",
    "COMPUTE_MASKS": "Compute cloud and shadow masks with DSen2-CR's detectors for scenes without masks; only "
                     "Level-1C scenes (13 bands, with B1 and B10) can be masked this way. The masks are kept in "
                     "the output's scene_masks/ folder.",
    "PATCH_SIZE": "Side of the square patches in pixels (CRT-UNet: 256). Patches lie on a regular lattice and "
                  "never overlap.",
    "TRAIN": "Share of the spatial blocks that go to training (CRT-UNet: 80 %).",
    "VAL": "Share of the spatial blocks that go to validation (CRT-UNet: 15 %).",
    "TEST": "Share of the spatial blocks that go to the test set (CRT-UNet: 5 %).",
    "BLOCK_PATCHES": "Side of the square spatial blocks, in patches; whole blocks go to one split, so "
                     "neighbouring patches do not end up in different splits.",
    "MAX_WATER": "Refuse patches with more open water than this (NDWI > 0.2 and NIR < 0.15 on the clear image); "
                 "CRT-UNet keeps land only (0). Empty: no water test (the water fraction is recorded anyway).",
    "SEED": "Seed of the split: the same seed gives the same split.",
    "COMPRESS": "Write the patches with DEFLATE compression (smaller, slightly slower to read).",
    "OVERWRITE": "Replace the dataset already in the output folder (a folder holding a TopoClear manifest.json). "
                 "The new dataset is built beside it and takes its place only once complete; a folder holding "
                 "anything else is never replaced. Unticked, the output folder must be new or empty.",
    "OUTPUT": "A new (or empty) folder for the patches and manifest.json. It is built under a temporary name and "
              "appears only when complete: a failed or cancelled run leaves nothing.",
}


class BuildDatasetAlgorithm(TopoClearAlgorithm):
    NAME = "builddataset"
    DISPLAY = "Build cloud-removal training patches"
    GROUP = "Cloud removal training"
    GROUP_ID = "cloudtraining"
    PARAMETER_HELP = PARAMETER_HELP
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
        "band descriptions or the band count (13: L1C order, 12: L2A, 10: B2-B8A, B11, B12). The target must have "
        "the cloudy image's bands, S1 two bands (VV, VH) and the terrain stack four. Scene names (the "
        "<i>Scene name</i> field, or the <tt>name</tt> column; by default the cloudy image's file name) become "
        "file names: a name holding a path (<tt>/</tt>, <tt>\\</tt>, <tt>..</tt>) is refused.</p>"
        "<p><b>Rules</b>: patches on a regular lattice, never overlapping; a patch is kept only if every pixel of "
        "every stack holds data (land only: with a land mask, every pixel must be land; <i>Maximum open water</i> "
        "also refuses patches with more water, NDWI &gt; 0.2 and NIR &lt; 0.15 on the clear image; CRT-UNet keeps "
        "100 % land, i.e. 0; empty: no water test). Patches are grouped in square <b>spatial blocks</b> and whole "
        "blocks go to one split (80 / 15 / 5 % by default), balanced within each source; scenes of the same "
        "ground (overlapping footprints or the same <tt>group</tt>) share the blocks, so no patch of one split "
        "overlaps another split. The same seed gives the same split.</p>"
        "<p><b>Masks</b>: without masks, a Level-1C scene (13 bands, with B1 and B10) gets cloud and shadow masks "
        "from DSen2-CR's detectors when <i>Compute missing masks</i> is ticked.</p>"
        "<p><b>Safety</b>: every input is checked before anything is written (readable and complete, on one grid, "
        "band counts). The output folder must be <b>new or empty</b>; it is built under a temporary name beside "
        "it and appears only when complete, so a failed or cancelled run leaves nothing. <i>Replace an existing "
        "dataset</i> (advanced) replaces a folder holding a TopoClear dataset (its manifest.json), and only once "
        "the new one is complete.</p>"
        "<p><b>Outputs</b>: the folder (<tt>s2_cloudy/</tt>, <tt>s2_clear/</tt>, <tt>s1/</tt>, <tt>terrain/</tt>, "
        "<tt>masks/</tt>, <tt>scene_masks/</tt>, <tt>manifest.json</tt> with paths relative to the folder), the "
        "manifest path, and the patch counts per split. Each manifest entry records the patch's scene, window, "
        "block, footprint and cloud cover.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("CLOUDY", "Cloudy Sentinel-2 image", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("CLEAR", "Cloud-free Sentinel-2 target (same grid)",
                                                            optional=True))
        for key, _, label in OPTIONAL_RASTERS:
            self.addParameter(QgsProcessingParameterRasterLayer(key, label, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "SCENES", "...or a scene list (CSV or JSON)", optional=True,
            fileFilter="Scene lists (*.csv *.json);;All files (*)"))
        self.addParameter(QgsProcessingParameterString("SCENE_NAME", "Scene name (prefix of patch ids)",
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
        self.addParameter(self.advanced(self.number("MAX_WATER", "Maximum open water per patch (%)", None,
                                                    0.0, 100.0, optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "SEED", "Random seed of the split", QgsProcessingParameterNumber.Integer, 0, False, 0)))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean("COMPRESS", "Compress patches (DEFLATE)",
                                                                      True)))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean("OVERWRITE", "Replace an existing dataset",
                                                                      False)))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputFile("MANIFEST", "Manifest"))
        for key, label in (("PATCHES", "Patches"), ("TRAIN_PATCHES", "Training patches"),
                           ("VAL_PATCHES", "Validation patches"), ("TEST_PATCHES", "Test patches")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    # -- checks before a run ------------------------------------------------------------------

    def parameter_problem(self, parameters, context) -> Optional[str]:
        """The inherited checks, then the scene names (SCENE_NAME, the scene list's rows), before anything
        runs."""
        problem = super().parameter_problem(parameters, context)
        if problem:
            return problem
        value = parameters.get("SCENE_NAME")
        name = (self.parameterAsString(parameters, "SCENE_NAME", context) or "") if not is_empty(value) else ""
        if name.strip():
            try:
                check_scene_name(name.strip(), "SCENE_NAME")
            except TopoClearError as exc:
                return str(exc)
        value = parameters.get("SCENES")
        listing = (self.parameterAsFile(parameters, "SCENES", context) or "") if not is_empty(value) else ""
        if listing and os.path.isfile(listing):
            try:
                load_scene_list(listing)
            except TopoClearError as exc:
                return f"SCENES: {exc}"
        return None

    def contract_problem(self, parameters, context) -> Optional[str]:
        """The inherited output contract, then the output folder: new or empty, or a dataset to replace
        (OVERWRITE)."""
        problem = super().contract_problem(parameters, context)
        if problem:
            return problem
        output = self._output_folder(parameters, context)
        if output:
            overwrite = self.parameterAsBoolean(parameters, "OVERWRITE", context)
            problem = output_folder_problem(output, overwrite, how_to_replace=OVERWRITE_HINT)
            if problem:
                return f"OUTPUT: {problem}"
        return None

    def _output_folder(self, parameters, context) -> str:
        """The output folder named by OUTPUT ('' when none is given yet)."""
        definition = self.parameterDefinition("OUTPUT")
        return self._destination_path(definition, "OUTPUT", parameters, context) if definition else ""

    # -- the run -------------------------------------------------------------------------------

    def scenes(self, parameters, context):
        source = self.parameterAsString(parameters, "SOURCE", context) or "user scenes"
        listing = self.parameterAsFile(parameters, "SCENES", context)
        cloudy = self.raster_file(parameters, "CLOUDY", context, required=False)
        if listing:
            if cloudy:
                raise QgsProcessingException("Give either a scene list (SCENES) or the scene's layers (CLOUDY, "
                                             "CLEAR...), not both")
            scenes = self.run_engine(lambda: load_scene_list(listing), None)
            for s in scenes:
                if s.source == "custom":
                    s.source = source
            return scenes
        clear = self.raster_file(parameters, "CLEAR", context, required=False)
        if not cloudy or not clear:
            raise QgsProcessingException("CLOUDY, CLEAR: give the cloudy image and its cloud-free target (or a "
                                         "scene list, SCENES)")
        typed = (self.parameterAsString(parameters, "SCENE_NAME", context) or "").strip()
        if typed:
            self.run_engine(lambda: check_scene_name(typed, "SCENE_NAME"), None)
        name = typed or os.path.splitext(os.path.basename(cloudy))[0]
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        extra = {attr: self.raster_file(parameters, key, context, required=False) for key, attr, _ in OPTIONAL_RASTERS}
        return [SceneInputs(name=name, cloudy=cloudy, target=clear, source=source,
                            **{k: v for k, v in extra.items() if v})]

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        scenes = self.scenes(parameters, context)
        output = self.parameterAsString(parameters, "OUTPUT", context)
        if output == "TEMPORARY_OUTPUT":
            output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not output:
            raise QgsProcessingException("OUTPUT: choose an output folder")
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
        compute_masks = self.parameterAsBoolean(parameters, "COMPUTE_MASKS", context)
        overwrite = self.parameterAsBoolean(parameters, "OVERWRITE", context)
        summary = self.run_engine(lambda: build_dataset_folder(scenes, output, options, monitor,
                                                               compute_masks=compute_masks, overwrite=overwrite),
                                  feedback)
        for line in summary.text().splitlines():
            feedback.pushInfo(line)
        if summary.total == 0:
            feedback.reportError("No patch was kept: check the rejection reasons above (nodata, water, land mask, "
                                 "scenes smaller than a patch).")
        per_split = {s: sum(c.get(s, 0) for c in summary.counts.values()) for s in ("train", "val", "test")}
        return {"OUTPUT": output, "MANIFEST": summary.manifest, "PATCHES": summary.total,
                "TRAIN_PATCHES": per_split["train"], "VAL_PATCHES": per_split["val"],
                "TEST_PATCHES": per_split["test"]}
