"""Tooltip help of Processing parameters, taken from a table of the algorithm class."""
from __future__ import annotations

from typing import Dict


class ParameterHelp:
    """Mixin of a :class:`~topoclear.processing_provider.base.TopoClearAlgorithm`: every parameter added gets its
    tooltip help from :attr:`PARAMETER_HELP` (parameter name -> text)."""

    #: Tooltip help of each parameter, by name.
    PARAMETER_HELP: Dict[str, str] = {}

    def addParameter(self, parameter, createOutput=True):  # noqa: N802,N803 (QGIS API names)
        """Every parameter with its tooltip help (:attr:`PARAMETER_HELP`)."""
        text = self.PARAMETER_HELP.get(parameter.name())
        if text and hasattr(parameter, "setHelp"):  # not in every QGIS 3: the labels say what matters
            parameter.setHelp(text)
        return super().addParameter(parameter, createOutput)
