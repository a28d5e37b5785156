"""The band tables every part of TopoClear shares: Sentinel-2 bands, their orders and roles,
Sentinel-1 polarisations and the terrain stack. Plain data, no imports: readers, networks,
training and the user interface all read their band lists from here.
"""
from __future__ import annotations

from typing import Dict, Tuple

#: Every Sentinel-2 MSI band, in the 13-band Level-1C stack order (SEN12MS-CR, DSen2-CR).
S2_BANDS_L1C: Tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
#: The 12 Level-2A bands (no B10), in stack order.
S2_BANDS_L2A: Tuple[str, ...] = tuple(b for b in S2_BANDS_L1C if b != "B10")
#: The 10 m and 20 m bands (CRT-UNet's 10-band input; 20 m bands resampled to 10 m).
S2_BANDS_10_20M: Tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
#: The four 10 m bands.
S2_BANDS_10M: Tuple[str, ...] = ("B2", "B3", "B4", "B8")
#: True-colour red, green, blue.
S2_BANDS_RGB: Tuple[str, ...] = ("B4", "B3", "B2")
#: Native pixel size (m) of each band.
NATIVE_RESOLUTION: Dict[str, int] = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20,
                                     "B8": 10, "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20}
#: Spectral roles used by the tools, and the band playing each.
ROLE_BANDS: Dict[str, str] = {"blue": "B2", "green": "B3", "red": "B4", "nir": "B8", "swir1": "B11",
                              "swir2": "B12"}
#: How a band is named to a user when it plays a role.
ROLE_LABELS: Dict[str, str] = {"B2": "blue (B2)", "B3": "green (B3)", "B4": "red (B4)", "B8": "NIR (B8)",
                               "B11": "SWIR1 (B11, 1610 nm)", "B12": "SWIR2 (B12)"}
#: Sentinel-1 dual polarisation, in channel order.
S1_BANDS: Tuple[str, ...] = ("VV", "VH")
#: The terrain stack, in band order: elevation (m), slope and aspect (degrees), hillshade (0-255).
TERRAIN_BANDS: Tuple[str, ...] = ("elevation", "slope", "aspect", "hillshade")
