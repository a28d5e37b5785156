"""The parameter checks every TopoClear algorithm runs before anything is computed: the data-safety
contract on the Processing side (the engine side is :mod:`topoclear.engine.io.atomic`).

Each check returns why a value cannot be used, naming the parameter, the file or value and what
was expected, or None. :class:`ParameterChecks` is a mixin of
:class:`~topoclear.processing_provider.base.TopoClearAlgorithm`.
"""
from __future__ import annotations

import functools
import math
import os
import re
import sys
from typing import Optional

import rasterio
from qgis.core import (QgsProcessingException, QgsProcessingParameterBand, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer)

from ..engine.checkpoints import checkpoint_paths
from ..engine.errors import TopoClearError
from ..engine.io.atomic import check_geotiff_path, refuse_inputs_as_outputs, why_not_writable
from ..engine.io.raster import check_complete
from ..qgis_common.log import failing_run


#: Options of an engine request that an engine error can be about (its ``option`` attribute, e.g. a
#: :class:`~topoclear.engine.clouds.tiling_defaults.TilingError`) and the parameters that set them.
OPTION_PARAMETERS = {"tile": "TILE_SIZE", "overlap": "OVERLAP"}


def guarded(method):
    """``processAlgorithm`` turning any exception into one Processing error (no traceback for the user)."""

    @functools.wraps(method)
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        try:
            return method(self, parameters, context, feedback)
        except QgsProcessingException:
            failing_run()
            raise
        except Exception as exc:  # noqa: BLE001 - the one place every failure becomes a message
            message = self.failure_message(exc)
            failing_run()
            raise QgsProcessingException(message) from None

    processAlgorithm._topoclear_guarded = True
    return processAlgorithm


def remove_table_files(path: str) -> None:
    """Remove a table file that could not be written, with the side-cars its driver makes."""
    stem, _ = os.path.splitext(path)
    names = [path, path + "-wal", path + "-shm", path + "-journal"]
    if path.lower().endswith(".shp"):
        names += [stem + ext for ext in (".shx", ".dbf", ".prj", ".cpg", ".qpj", ".qmd")]
    for name in names:
        try:
            os.remove(name)
        except OSError:
            pass


def disk_reason(text: str) -> str:
    lowered = text.lower()
    if "disk is full" in lowered or "no space left" in lowered or "disk full" in lowered:
        return f"the disk is full: {text}"
    return text


def is_empty(value) -> bool:
    """No value: None, an empty text, or the NULL variant a dialog passes for an empty optional field (a
    layer or a data-defined property is always a value)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    from qgis.core import QgsMapLayer, QgsProperty

    is_null = getattr(value, "isNull", None)
    return callable(is_null) and not isinstance(value, (QgsMapLayer, QgsProperty)) and bool(is_null())


def is_dynamic(value) -> bool:
    """A value Processing evaluates itself (a data-defined property, a model output)."""
    from qgis.core import QgsProperty

    return isinstance(value, QgsProperty)


def sink_destination(value, context) -> str:
    """The destination a table or vector output names, as given ('' for a temporary output), without
    registering anything in ``context``."""
    from qgis.core import QgsProcessingOutputLayerDefinition, QgsProperty

    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink
    if isinstance(value, QgsProperty):
        value = value.valueAsString(context.expressionContext())
        value = value[0] if isinstance(value, tuple) else value
    text = str(value or "")
    return "" if text == "TEMPORARY_OUTPUT" else text


def layer_file(value, context) -> Optional[str]:
    """The file a raster-layer parameter value names, or None (a layer of the project that is not a file,
    a GDAL connection string such as ``SENTINEL2_L2A:...``, a virtual path)."""
    from qgis.core import QgsMapLayer, QgsProcessingUtils

    if value is None or is_dynamic(value):
        return None
    if isinstance(value, QgsMapLayer):
        return value.source().split("|")[0] if value.providerType() == "gdal" else None
    text = str(value).strip()
    if not text:
        return None
    if context is not None and not os.path.exists(text.split("|")[0]):
        layer = QgsProcessingUtils.mapLayerFromString(text, context, False)
        if layer is not None:
            return layer.source().split("|")[0] if layer.providerType() == "gdal" else None
    path = text.split("|")[0]
    if path.startswith("/vsi") or (re.match(r"^[A-Za-z][A-Za-z0-9_]+:", path) and not os.path.exists(path)):
        return None
    return path


def _band_count(path: Optional[str]) -> int:
    if not path or not os.path.isfile(path):
        return 0
    try:
        with rasterio.open(path) as ds:
            return ds.count
    except Exception:  # unreadable files are reported by the raster check
        return 0


def _band_range(count: int) -> str:
    return f"1..{count}"


def _number_problem(definition, key: str, value) -> Optional[str]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{key}: {value!r} is not a number"
    if not math.isfinite(number):
        return f"{key}: {value} is not a finite number"
    lo, hi = definition.minimum(), definition.maximum()
    bounded_lo, bounded_hi = lo > -sys.float_info.max, hi < sys.float_info.max
    if (bounded_lo and number < lo) or (bounded_hi and number > hi):
        if bounded_lo and bounded_hi:
            accepted = f"from {lo:g} to {hi:g}"
        elif bounded_lo:
            accepted = f"at least {lo:g}"
        else:
            accepted = f"at most {hi:g}"
        return f"{key}: {number:g} is outside the accepted range (a number {accepted})"
    if definition.dataType() == QgsProcessingParameterNumber.Integer and number != int(number):
        return f"{key}: {value} is not a whole number"
    return None


class ParameterChecks:
    """The checks of parameter values and of the output contract (see the module docstring)."""

    def contract_problem(self, parameters, context) -> Optional[str]:
        """Why the outputs would overwrite or write into the inputs (or each other), or None."""
        inputs, folders, outputs = self._input_and_output_paths(parameters, context)
        try:
            refuse_inputs_as_outputs(outputs, {**inputs, **folders})
        except TopoClearError as exc:
            return str(exc)
        for key, path in outputs.items():
            real = os.path.realpath(path)
            for in_key, folder in folders.items():
                if real.startswith(os.path.realpath(folder).rstrip(os.sep) + os.sep):
                    return (f"{key}: the output {path} lies inside the input folder {in_key} ({folder}); "
                            "TopoClear never writes into its inputs: choose another place")
            if isinstance(self.parameterDefinition(key.split(" ")[0]), QgsProcessingParameterFolderDestination):
                for in_key, src in {**inputs, **folders}.items():
                    if os.path.realpath(src).startswith(real.rstrip(os.sep) + os.sep):
                        return (f"{key}: the output folder {path} holds the input {in_key} ({src}); TopoClear "
                                "never writes where its inputs are: choose another (new or empty) folder")
        return None

    def option_named(self, message: str, exc: BaseException) -> str:
        """``message`` prefixed with the parameter that set the engine option ``exc`` is about, where the
        algorithm has that parameter (see :data:`OPTION_PARAMETERS`)."""
        key = OPTION_PARAMETERS.get(getattr(exc, "option", None))
        if key and self.parameterDefinition(key) is not None and not message.startswith(f"{key}:"):
            return f"{key}: {message}"
        return message

    def parameter_problem(self, parameters, context) -> Optional[str]:
        """Why a parameter value cannot be used (the first one found), or None."""
        for definition in self.parameterDefinitions():
            key = definition.name()
            value = parameters.get(key)
            if is_empty(value) or is_dynamic(value):
                continue
            if isinstance(definition, QgsProcessingParameterRasterLayer):
                problem = self._raster_problem(key, value, context)
            elif isinstance(definition, QgsProcessingParameterMultipleLayers):
                items = value if isinstance(value, (list, tuple)) else [value]
                problem = next((p for i, item in enumerate(items)
                                if (p := self._raster_problem(f"{key} #{i + 1}", item, context)) is not None), None)
            elif isinstance(definition, QgsProcessingParameterFile):
                problem = self._file_problem(definition, key, value, context)
            elif isinstance(definition, QgsProcessingParameterBand):
                problem = self._band_problem(definition, key, value, parameters, context)
            elif isinstance(definition, QgsProcessingParameterNumber):
                problem = _number_problem(definition, key, value)
            elif definition.isDestination():
                problem = self._destination_problem(definition, key, parameters, context)
            else:
                problem = None
            if problem:
                return problem
        return self._tiling_problem(parameters)

    def _tiling_problem(self, parameters) -> Optional[str]:
        """Why the tile overlap cannot fit in the tile size, both as given (the engine checks them again
        against the model, whose size multiple rounds them up), or None."""
        tile_key, overlap_key = OPTION_PARAMETERS["tile"], OPTION_PARAMETERS["overlap"]
        if self.parameterDefinition(tile_key) is None or self.parameterDefinition(overlap_key) is None:
            return None
        tile, overlap = parameters.get(tile_key), parameters.get(overlap_key)
        if any(is_empty(v) or is_dynamic(v) for v in (tile, overlap)):
            return None
        try:
            tile, overlap = int(float(tile)), int(float(overlap))
        except (TypeError, ValueError):
            return None
        if tile > 0 and overlap >= tile:
            return (f"{overlap_key}: an overlap of {overlap} px is not smaller than the tile size of {tile} px "
                    f"({tile_key}): choose a smaller overlap or a larger tile")
        return None

    def _raster_problem(self, key: str, value, context) -> Optional[str]:
        path = layer_file(value, context)
        if path is None:
            return None
        if not os.path.exists(path):
            return f"{key}: file not found: {path}"
        try:
            ds = rasterio.open(path)
        except Exception as exc:  # rasterio raises several types for files it cannot read
            if os.path.isdir(path):
                return f"{key}: {path} is a folder, expected a raster file (GeoTIFF, JP2, VRT...)"
            return (f"{key}: {path} is not a raster GDAL can read: it is of another kind, truncated or corrupt "
                    f"(expected a GeoTIFF, JP2, VRT...; GDAL: {exc})")
        try:
            check_complete(ds, key)
        except TopoClearError as exc:
            return str(exc)
        finally:
            ds.close()
        return None

    def _file_problem(self, definition, key: str, value, context) -> Optional[str]:
        path = str(value)
        if definition.behavior() == QgsProcessingParameterFile.Folder:
            if not os.path.exists(path):
                return f"{key}: folder not found: {path}"
            if not os.path.isdir(path):
                return f"{key}: {path} is a file, expected a folder"
            return None
        if not os.path.exists(path):
            suffixes = re.findall(r"\*(\.[A-Za-z0-9_]+)", definition.fileFilter() or "")
            if definition.extension():
                suffixes.append("." + definition.extension().lstrip("."))
            if any(os.path.isfile(path + suffix) for suffix in suffixes):  # e.g. weights named without .safetensors
                return None
            return f"{key}: file not found: {path}"
        if not definition.checkValueIsAcceptable(value, context):
            expected = definition.fileFilter() or (f"*.{definition.extension()}" if definition.extension() else "")
            return (f"{key}: {path} is not a file of the expected type ({expected.replace(';;', '; ')}): choose one "
                    "of those")
        return None

    def _band_problem(self, definition, key: str, value, parameters, context) -> Optional[str]:
        bands = value if isinstance(value, (list, tuple)) else [value]
        parent = definition.parentLayerParameterName()
        path = layer_file(parameters.get(parent), context) if parent and parameters.get(parent) else None
        count = _band_count(path)
        of_layer = f"; {os.path.basename(path)} has {count} band(s) ({_band_range(count)})" if count else ""
        for item in bands:
            try:
                band = int(str(item))
            except ValueError:
                return f"{key}: {item!r} is not a band number (bands are numbered from 1{of_layer})"
            if band < 1:
                return f"{key}: band {band} does not exist: bands are numbered from 1{of_layer}"
            if count and band > count:
                return (f"{key}: band {band} does not exist: {os.path.basename(path)} ({parent}) has {count} band(s) "
                        f"({_band_range(count)})")
        return None

    def _destination_problem(self, definition, key: str, parameters, context) -> Optional[str]:
        path = self._destination_path(definition, key, parameters, context)
        if not path:
            return None
        if isinstance(definition, QgsProcessingParameterFolderDestination):
            if os.path.exists(path) and not os.path.isdir(path):
                return f"{key}: {path} is a file, expected a folder"
            existing = path
            while existing and not os.path.exists(existing):
                parent = os.path.dirname(existing.rstrip(os.sep))
                if parent == existing:
                    break
                existing = parent
            folder = existing or "."
            if os.path.isdir(folder) and not os.access(folder, os.W_OK):
                return f"{key}: cannot create {path}: the folder {folder} is not writable ({why_not_writable(folder)})"
            return None
        if isinstance(definition, QgsProcessingParameterRasterDestination):
            try:
                check_geotiff_path(path, key)
            except TopoClearError as exc:
                return str(exc)
        if os.path.isdir(path):
            return f"{key}: {path} is a folder, expected a file name"
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            return f"{key}: cannot write {path}: the folder {folder} does not exist"
        if not os.access(folder, os.W_OK):
            return f"{key}: cannot write {path}: the folder {folder} is not writable ({why_not_writable(folder)})"
        return None

    def _destination_path(self, definition, key: str, parameters, context) -> str:
        """The file or folder a destination parameter names ('' for memory layers and databases)."""
        if is_empty(parameters.get(key)):
            return ""
        if isinstance(definition, QgsProcessingParameterFeatureSink):
            # not parameterAsOutputLayer: it would register a "memory:<name>" layer to load on completion that
            # no sink ever creates (the dialog then says it was not generated)
            path = sink_destination(parameters.get(key), context)
        elif isinstance(definition, QgsProcessingParameterFolderDestination):
            path = self.parameterAsString(parameters, key, context) or ""
        else:
            path = self.parameterAsFileOutput(parameters, key, context) or ""
        path = path.split("|")[0]
        if path.startswith(("memory:", "ogr:", "postgres", "postgis:", "spatialite:", "mssql:", "oracle:",
                            "TEMPORARY_OUTPUT", "/vsi")):
            return ""
        return path

    def _input_and_output_paths(self, parameters, context):
        """(input files, input folders, output paths) by parameter name, as given. A weights output
        (.safetensors) brings its model card (.json beside it) as a second output."""
        inputs, folders, outputs = {}, {}, {}
        for definition in self.parameterDefinitions():
            key = definition.name()
            value = parameters.get(key)
            if is_empty(value) or is_dynamic(value):
                continue
            if definition.isDestination():
                path = self._destination_path(definition, key, parameters, context)
                if path:
                    outputs[key] = path
                    if isinstance(definition, QgsProcessingParameterFileDestination) and \
                            "safetensors" in (definition.defaultFileExtension() or "").lower():
                        weights, card = checkpoint_paths(path)
                        if os.path.realpath(str(weights)) != os.path.realpath(path):
                            outputs[f"{key} (weights)"] = str(weights)
                        outputs[f"{key} (model card)"] = str(card)
            elif isinstance(definition, QgsProcessingParameterRasterLayer):
                path = layer_file(value, context)
                if path:
                    inputs[key] = path
            elif isinstance(definition, QgsProcessingParameterMultipleLayers):
                for i, item in enumerate(value if isinstance(value, (list, tuple)) else [value]):
                    path = layer_file(item, context)
                    if path:
                        inputs[f"{key} #{i + 1}"] = path
            elif isinstance(definition, QgsProcessingParameterFile):
                path = str(value)
                if os.path.isdir(path):
                    folders[key] = path
                elif path:
                    inputs[key] = path
        return inputs, folders, outputs
