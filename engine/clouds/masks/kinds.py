"""The cloud-mask methods a user can choose, defined once for every tool that takes a cloud mask.

Cloud removal, the snow map, the evaluation, the dataset builder and the docks all offer their
mask choice from :data:`MASK_METHODS` (Processing enums and combo boxes are generated from it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from ...errors import InputError


@dataclass(frozen=True)
class MaskMethod:
    """One way to get the cloud and shadow mask of a Sentinel-2 scene.

    ``uses_raster``: the method reads a mask raster the user gives (an SCL band or any mask);
    ``consumers``: the tools that offer it (``"removal"``, ``"snow"``, ``"evaluate"``).
    """

    key: str
    title: str
    description: str
    uses_raster: bool = False
    consumers: Tuple[str, ...] = ("removal", "snow", "evaluate")


AUTO = MaskMethod(
    "auto", "Automatic",
    "the mask raster when one is given (read as SCL when its name says SCL), else the product's SCL band, "
    "else the DSen2-CR rules on Level-1C bands, else none", uses_raster=True)
SCL = MaskMethod("scl", "SCL scene classification",
                 "Sen2Cor classes 3 (shadow), 8 and 9 (cloud), 10 (cirrus) of the given raster", uses_raster=True)
RASTER = MaskMethod("raster", "Cloud mask raster", "non-zero = cloud or shadow", uses_raster=True)
RULES = MaskMethod("computed", "DSen2-CR rules",
                   "computed from the Level-1C bands (cloud score and Zhai shadows; needs B1 and B10)",
                   consumers=("removal",))
NONE = MaskMethod("none", "None", "no cloud mask: every pixel counts as clear", consumers=("removal", "snow"))

#: Every method, in menu order.
MASK_METHODS: Tuple[MaskMethod, ...] = (AUTO, SCL, RASTER, RULES, NONE)


def mask_methods(consumer: str) -> Tuple[MaskMethod, ...]:
    """The methods ``consumer`` (``"removal"``, ``"snow"``, ``"evaluate"``) offers, in menu order."""
    return tuple(m for m in MASK_METHODS if consumer in m.consumers)


def mask_method(key: str, consumer: str = "removal") -> MaskMethod:
    """The method ``key``; :class:`InputError` naming the choices when ``consumer`` does not offer it."""
    for method in mask_methods(consumer):
        if method.key == key:
            return method
    choices = ", ".join(m.key for m in mask_methods(consumer))
    raise InputError(f"cloud mask method {key!r} is not one of {choices}")
