"""Shared plumbing of TopoClear Processing algorithms: inputs as file paths, progress, errors, styles."""
from __future__ import annotations

import importlib.util
import os
from typing import Callable, List, Optional

from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsFeatureSink, QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingParameterDefinition,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFile,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer, QgsWkbTypes)
from qgis.PyQt.QtGui import QIcon

from ..engine.errors import TopoClearError
from ..engine.io.atomic import check_geotiff_path, refuse_inputs_as_outputs
from ..engine.progress import Monitor
from ..qgis_common.errors import user_message
from ..qgis_common.layers import LayerError, file_behind_layer
from ..qgis_common.log import feedback_monitor
from ..qgis_common.styles import style_when_loaded

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "ui", "icons", "topoclear.svg")


TORCH_HELP = ("Install them for the Python this QGIS uses (CPU: pip install torch safetensors --index-url "
              "https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple; with an NVIDIA GPU: "
              "pip install torch safetensors), or start QGIS from the TopoClear virtual environment (see the "
              "README), then restart QGIS.")


def missing_torch_packages() -> List[str]:
    """The packages of the PyTorch algorithms (torch, safetensors) that this Python cannot import."""
    missing = []
    for name in ("torch", "safetensors"):
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None
            missing.append(name)
    return missing


class TopoClearAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set ``NAME``, ``DISPLAY``, ``GROUP``, ``GROUP_ID``, ``HELP``."""

    NAME = ""
    DISPLAY = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""

    def name(self):
        return self.NAME

    def displayName(self):  # noqa: N802
        return self.DISPLAY

    def group(self):
        return self.GROUP

    def groupId(self):  # noqa: N802
        return self.GROUP_ID

    def shortHelpString(self):  # noqa: N802
        return self.HELP

    def icon(self):
        return QIcon(ICON)

    def createInstance(self):  # noqa: N802
        return type(self)()

    # -- the data-safety contract, checked before every run ------------------------------------

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        """Refuse, before anything runs, an output that is one of the inputs (or lies inside an input
        folder), two outputs that are one file, and raster outputs that are not GeoTIFF."""
        inputs, folders, outputs = self._input_and_output_paths(parameters, context)
        try:
            refuse_inputs_as_outputs(outputs, inputs)
            for key, path in outputs.items():
                if isinstance(self.parameterDefinition(key), QgsProcessingParameterRasterDestination):
                    check_geotiff_path(path, key)
                for in_key, folder in folders.items():
                    real = os.path.realpath(path)
                    if real.startswith(os.path.realpath(folder) + os.sep):
                        raise QgsProcessingException(
                            f"{key}: the output {path} lies inside the input folder {in_key} ({folder}); "
                            "TopoClear never writes into its inputs: choose another place")
        except TopoClearError as exc:
            raise QgsProcessingException(str(exc)) from None
        return True

    def _input_and_output_paths(self, parameters, context):
        """(input files, input folders, output paths) by parameter name, as given."""
        inputs, folders, outputs = {}, {}, {}
        for definition in self.parameterDefinitions():
            key = definition.name()
            if parameters.get(key) in (None, ""):
                continue
            if definition.isDestination():
                if isinstance(definition, QgsProcessingParameterFeatureSink):
                    path = str(parameters.get(key))
                    path = path if os.path.sep in path or path.lower().endswith((".csv", ".gpkg", ".shp")) else ""
                else:
                    path = self.parameterAsFileOutput(parameters, key, context)
                if path and not path.startswith(("memory:", "ogr:", "postgres")):
                    outputs[key] = path
            elif isinstance(definition, QgsProcessingParameterRasterLayer):
                layer = self.parameterAsRasterLayer(parameters, key, context)
                if layer is not None:
                    inputs[key] = layer.source().split("|")[0]
            elif isinstance(definition, QgsProcessingParameterMultipleLayers):
                for i, layer in enumerate(self.parameterAsLayerList(parameters, key, context) or []):
                    inputs[f"{key} #{i + 1}"] = layer.source().split("|")[0]
            elif isinstance(definition, QgsProcessingParameterFile):
                path = self.parameterAsFile(parameters, key, context)
                if path and os.path.isdir(path):
                    folders[key] = path
                elif path:
                    inputs[key] = path
        return inputs, folders, outputs

    # -- helpers for subclasses ---------------------------------------------------------------

    @staticmethod
    def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        return parameter

    @staticmethod
    def number(name: str, label: str, default: float, minimum: Optional[float] = None,
               maximum: Optional[float] = None, optional: bool = False) -> QgsProcessingParameterNumber:
        param = QgsProcessingParameterNumber(name, label, QgsProcessingParameterNumber.Double, default, optional)
        if minimum is not None:
            param.setMinimum(minimum)
        if maximum is not None:
            param.setMaximum(maximum)
        return param

    def raster_file(self, parameters, name: str, context, required: bool = True) -> Optional[str]:
        """File path of a raster layer parameter; the layer must be file-based (GDAL provider)."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            if required:
                raise QgsProcessingException(f"{name}: no raster layer given or it could not be loaded")
            return None
        try:
            return file_behind_layer(layer, name)
        except LayerError as exc:
            raise QgsProcessingException(str(exc)) from None

    @staticmethod
    def table_output(name: str, label: str) -> QgsProcessingParameterFeatureSink:
        """A table without geometry, created by default in the toolbox and optional elsewhere (a script or
        ``qgis_process`` that does not name it gets none)."""
        return QgsProcessingParameterFeatureSink(name, label, QgsProcessing.TypeVector, optional=True,
                                                 createByDefault=True)

    def write_table(self, parameters, name: str, context, fields, rows) -> Optional[str]:
        """Write ``rows`` (lists of attribute values) to the table output ``name``; its id, or None when the
        caller did not ask for it."""
        sink, sink_id = self.parameterAsSink(parameters, name, context, fields, QgsWkbTypes.NoGeometry,
                                             QgsCoordinateReferenceSystem())
        if sink is None:
            if parameters.get(name) in (None, ""):
                return None
            raise QgsProcessingException(f"{name}: the table {parameters.get(name)!r} could not be created")
        for row in rows:
            feature = QgsFeature(fields)
            feature.setAttributes(list(row))
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        return sink_id

    @staticmethod
    def monitor(feedback) -> Monitor:
        return feedback_monitor(feedback)

    @staticmethod
    def run_engine(call: Callable, feedback):
        """Run an engine call, turning any failure into one Processing error the user can act on
        (:func:`~topoclear.qgis_common.errors.user_message`)."""
        try:
            return call()
        except QgsProcessingException:
            raise
        except Exception as exc:  # every failure reaches the user as a message, never as a traceback
            raise QgsProcessingException(user_message(exc)) from None

    @staticmethod
    def style_output(context, output_path: str, style: str) -> None:
        """Style ``output_path`` when Processing loads it into the project (main thread)."""
        style_when_loaded(context, output_path, style)


class TorchAlgorithm(TopoClearAlgorithm):
    """An algorithm that runs PyTorch: listed always, runnable only where torch can be imported."""

    def canExecute(self):  # noqa: N802
        missing = missing_torch_packages()
        if missing:
            return False, (f"{self.displayName()} needs PyTorch: the Python of this QGIS cannot import "
                           f"{', '.join(missing)}. {TORCH_HELP}")
        return True, ""
