"""The cloud-mask methods a user can choose, defined once for every tool that takes a cloud mask.

Cloud removal, the cloud mask tool, the snow map, the evaluation, the dataset builder and the docks
all offer their mask choice from :data:`MASK_METHODS` (Processing enums and combo boxes are
generated from it). Every method is computed by one engine, :mod:`.engine`.

New methods are appended at the end of :data:`MASK_METHODS`: Processing enums are stored by index
(in models and scripts), so the index of an existing method never changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from ...errors import InputError


@dataclass(frozen=True)
class MaskMethod:
    """One way to get the cloud and shadow mask of a Sentinel-2 scene.

    ``uses_raster``: the method reads a mask raster the user gives (an SCL band or any mask);
    ``consumers``: the tools that offer it (``"removal"``, ``"snow"``, ``"evaluate"``,
    ``"cloudmask"``).
    """

    key: str
    title: str
    description: str
    uses_raster: bool = False
    consumers: Tuple[str, ...] = ("removal", "snow", "evaluate")


AUTO = MaskMethod(
    "auto", "Automatic",
    "the mask raster when one is given (read as SCL when its name says SCL), else the product's SCL band, "
    "else the pretrained detector (ukis-csmask, when installed), else the DSen2-CR rules on Level-1C bands, "
    "else none; the log says which and why", uses_raster=True,
    consumers=("removal", "snow", "evaluate", "cloudmask"))
SCL = MaskMethod("scl", "SCL scene classification",
                 "Sen2Cor classes 3 (shadow), 8 and 9 (cloud), 10 (cirrus) of the given raster or of the product's "
                 "SCL band", uses_raster=True, consumers=("removal", "snow", "evaluate", "cloudmask"))
RASTER = MaskMethod("raster", "Cloud mask raster",
                    "0 = clear, 2 = shadow, any other value = cloud, the raster's nodata = no data "
                    "(reads TopoClear's own 0/1/2/255 cloud masks and any non-zero = cloud mask)", uses_raster=True,
                    consumers=("removal", "snow", "evaluate", "cloudmask"))
RULES = MaskMethod("computed", "DSen2-CR rules",
                   "computed from the Level-1C bands (cloud score and Zhai shadows; needs B1 and B10)",
                   consumers=("removal", "cloudmask"))
NONE = MaskMethod("none", "None", "no cloud mask: every pixel counts as clear", consumers=("removal", "snow"))
DETECTOR = MaskMethod("detector", "Pretrained detector (ukis-csmask)",
                      "a deep network trained on SPARCS and CloudSEN12+ (ukis-csmask ONNX models, Level-1C or "
                      "Level-2A model from the product level) run at about 30 m; needs B2, B3, B4, B8 (and B11, "
                      "B12 for its better model) and the onnxruntime and ukis-csmask packages",
                      consumers=("removal", "snow", "evaluate", "cloudmask"))

#: Every method, in menu order (new methods at the end: see the module notes).
MASK_METHODS: Tuple[MaskMethod, ...] = (AUTO, SCL, RASTER, RULES, NONE, DETECTOR)


def mask_methods(consumer: str) -> Tuple[MaskMethod, ...]:
    """The methods ``consumer`` (``"removal"``, ``"snow"``, ``"evaluate"``, ``"cloudmask"``) offers, in menu
    order."""
    return tuple(m for m in MASK_METHODS if consumer in m.consumers)


def mask_method(key: str, consumer: str = "removal") -> MaskMethod:
    """The method ``key``; :class:`InputError` naming the choices when ``consumer`` does not offer it."""
    for method in mask_methods(consumer):
        if method.key == key:
            return method
    choices = ", ".join(m.key for m in mask_methods(consumer))
    raise InputError(f"cloud mask method {key!r} is not one of {choices}")
