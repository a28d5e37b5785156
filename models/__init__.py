"""Cloud-removal networks (PyTorch), their registry, value scalings, losses and metrics.

No module here opens files or imports ``qgis``; models take and return tensors.

Building
--------
>>> from topoclear.models import build_model, list_models, get_spec
>>> model = build_model("crt_unet", s2_bands=10, s1_bands=2, terrain_bands=4)
>>> spec = get_spec("crt_unet")   # inputs, default bands, scaling, size multiple, description

The catalogue (:mod:`topoclear.models.registry`) registers ``crt_unet``, ``unet``, ``dsen2cr``,
``cr_gan``, ``sar2opt_gan`` and the multi-temporal ``ca_mtcr``; each entry is a
:class:`~topoclear.models.spec.ModelSpec` holding every fact about its model (inputs and bands,
scaling, receptive field, tile defaults, optical-only variant, menu order, shipped weights).
:func:`removal_models` and :func:`training_models` list what the tools offer. Band arguments
take a count or a list of band names; ``s1_bands=0`` builds the variant without SAR where a
model has one.

Calling convention (every model)
--------------------------------
``prediction = model(s2, s1=None, terrain=None)``

* ``s2``: cloudy Sentinel-2, float tensor (N, C_s2, H, W), bands in ``model.input_layout.s2``
  order, values in the model's scaling (``get_spec(name).scaling``, see
  :mod:`topoclear.models.scaling`). ``None`` for models with ``spec.needs_s2 == False``
  (SAR-to-optical).
* ``s1``: Sentinel-1, (N, C_s1, H, W), same scaling name; bands ``input_layout.s1``.
* ``terrain``: terrain stack (N, C_t, H, W) (CRT-UNet also accepts H/2 x W/2), scaled with
  :func:`~topoclear.models.scaling.scale_terrain`; ignored by models without terrain.
* ``prediction``: (N, C_out, H, W), bands ``input_layout.output``, in the *same scaling as the
  S2 input*; undo it with :func:`~topoclear.models.scaling.unscale_s2`.
* H and W must be multiples of ``spec.size_multiple`` (32 for the UNets, 8 for the GANs, 1 for
  DSen2-CR); models never pad. All models are fully convolutional.
* Pass inputs by keyword or in this order. A model built by :func:`build_model` checks each
  call and raises :class:`~topoclear.models.registry.MissingInputError` naming the missing
  input and every expected one.
* Model-specific extras are keyword-only additions: CRT-UNet ``zero_terrain=("dem",)`` for the
  ablation; the cloud-removal GAN ``translated=`` for a precomputed SAR-to-optical image.
* Multi-temporal models (``spec.multi_temporal``) take ``s2`` / ``s1`` as (N, T, C, H, W)
  and still return one (N, C_out, H, W) image.

Everything is re-exported lazily; ``topoclear.models.scaling``, ``.spec`` and ``.registry`` (the
catalogue) import no torch, so the catalogue can be read where PyTorch is not installed.
"""
from __future__ import annotations

import importlib
from typing import Any, List

_EXPORTS = {
    # registry
    "build_model": "registry",
    "build_discriminator": "registry",
    "list_models": "registry",
    "get_spec": "registry",
    "register_model": "registry",
    "unregister_model": "registry",
    "removal_models": "registry",
    "training_models": "registry",
    "count_parameters": "registry",
    "ModelSpec": "spec",
    "TileDefaults": "spec",
    "InputLayout": "spec",
    "UnknownModelError": "registry",
    "MissingInputError": "spec",
    "InputMismatchError": "spec",
    # networks
    "UNet": "unet",
    "CRTUNet": "crt_unet",
    "DSen2CR": "dsen2cr",
    "DRIBGenerator": "gan",
    "PatchDiscriminator": "gan",
    "SarToOpticalGAN": "gan",
    "CloudRemovalGAN": "gan",
    "CAMTCR": "ca_mtcr",
    "SARNoise2NoiseVQVAE": "ca_mtcr",
    # scalings
    "scale_s2": "scaling",
    "unscale_s2": "scaling",
    "scale_s1": "scaling",
    "unscale_s1": "scaling",
    "scale_terrain": "scaling",
    "unscale_terrain": "scaling",
    "SCALINGS": "scaling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
