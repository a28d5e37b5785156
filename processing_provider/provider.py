"""The ``topoclear`` Processing provider."""
from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .cloudmask import CloudMaskAlgorithm
from .clouds import EvaluateAlgorithm, RemoveCloudsAlgorithm
from .clouds_timeseries import RemoveCloudsTimeSeriesAlgorithm
from .dataset import BuildDatasetAlgorithm
from .snow import NdsiAlgorithm, SnowMapAlgorithm, SnowStatsAlgorithm
from .snowseries import SnowSeriesAlgorithm
from .terrain import AspectAlgorithm, HillshadeAlgorithm, SlopeAlgorithm, TerrainStackAlgorithm
from .training import TrainModelAlgorithm

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "ui", "icons", "topoclear.svg")


def algorithm_classes():
    """Every algorithm of the provider, in toolbox order."""
    return [SlopeAlgorithm, AspectAlgorithm, HillshadeAlgorithm, TerrainStackAlgorithm,
            NdsiAlgorithm, SnowMapAlgorithm, SnowStatsAlgorithm, SnowSeriesAlgorithm,
            BuildDatasetAlgorithm, TrainModelAlgorithm,
            CloudMaskAlgorithm, RemoveCloudsAlgorithm, RemoveCloudsTimeSeriesAlgorithm, EvaluateAlgorithm]


class TopoClearProvider(QgsProcessingProvider):
    def id(self):
        return "topoclear"

    def name(self):
        return "TopoClear"

    def longName(self):  # noqa: N802
        return "TopoClear: terrain, cloud removal and snow mapping for Sentinel-2"

    def icon(self):
        return QIcon(ICON_PATH)

    def svgIconPath(self):  # noqa: N802
        return ICON_PATH

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802
        return ["tif"]

    def loadAlgorithms(self):  # noqa: N802
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
