"""A trained network as a predictor for :func:`topoclear.engine.training.baselines.evaluate_baselines`.

:func:`model_predictor` wraps a network built by :func:`topoclear.models.build_model` (with its
weights loaded) into ``f(sample) -> (C, H, W)`` reflectance on the sample's bands, the form the
baselines take, so that models and baselines are scored by the same code on the same samples.
Inputs are scaled with the network's scaling, the patch is padded by reflection to the network's
size multiple, and bands the network does not predict are copied from the cloudy input. With
``keep_clear`` (the default of ``topoclear:removeclouds``) pixels outside the sample's cloud /
shadow mask are the cloudy input's, as the inpainting baseline keeps them.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np

from ...models.scaling import canonical_terrain_name, scale_s1, scale_s2, scale_terrain, unscale_s2
from ..errors import InputError

ZeroTerrain = Union[None, str, Sequence[str]]


def _pick(available: Sequence[str], wanted: Sequence[str], what: str, sample_id: str, canonical=lambda b: b) -> list:
    names = [canonical(b) for b in available]
    missing = [b for b in wanted if canonical(b) not in names]
    if missing:
        raise InputError(f"sample {sample_id}: {what} bands {', '.join(missing)} missing (has {', '.join(available)})")
    return [names.index(canonical(b)) for b in wanted]


def sample_accepts(model, sample) -> bool:
    """Whether ``sample`` (an :class:`~topoclear.engine.training.baselines.EvalSample`) has every input ``model`` reads."""
    layout = model.input_layout
    return (("s1" not in layout.inputs or sample.s1 is not None)
            and ("terrain" not in layout.inputs or sample.terrain is not None)
            and all(b in sample.bands for b in layout.s2))


def model_predictor(model, keep_clear: bool = True, zero_terrain: ZeroTerrain = None,
                    device: str = "cpu") -> Callable:
    """``f(sample) -> prediction`` for ``evaluate_baselines(predictors={name: f})``.

    ``zero_terrain``: terrain channels set to zero (CRT-UNet's ablation), by name or ``"all"``.
    """
    import torch

    from ...models.registry import get_spec

    spec = get_spec(model.spec_name)
    layout = model.input_layout
    multiple = max(1, int(spec.size_multiple))
    model = model.to(device).eval()

    def predict(sample) -> np.ndarray:
        source = sample.sample
        cloudy = np.asarray(sample.cloudy, np.float32)
        s2_idx = _pick(sample.bands, layout.s2, "S2", sample.id)
        inputs = {"s2": scale_s2(cloudy[s2_idx] * 10000.0, spec.scaling)}
        if "s1" in layout.inputs:
            if sample.s1 is None:
                raise InputError(f"sample {sample.id} has no Sentinel-1, which {spec.title} reads")
            idx = _pick(source.s1_bands, layout.s1, "S1", sample.id)
            inputs["s1"] = scale_s1(np.nan_to_num(sample.s1[idx], nan=-25.0), spec.scaling, bands=layout.s1,
                                    channel_axis=0)
        if "terrain" in layout.inputs:
            if sample.terrain is None:
                raise InputError(f"sample {sample.id} has no terrain stack, which {spec.title} reads")
            idx = _pick(source.terrain_bands, layout.terrain, "terrain", sample.id, canonical_terrain_name)
            inputs["terrain"] = scale_terrain(np.nan_to_num(sample.terrain[idx]), spec.scaling, bands=layout.terrain,
                                              channel_axis=0)
        h, w = cloudy.shape[1:]
        ph, pw = -h % multiple, -w % multiple
        tensors = {k: torch.from_numpy(np.pad(np.asarray(v, np.float32), ((0, 0), (0, ph), (0, pw)), mode="reflect")
                                       )[None].to(device) for k, v in inputs.items()}
        extra = {"zero_terrain": zero_terrain} if zero_terrain is not None else {}
        with torch.no_grad():
            out = model(**tensors, **extra)[0, :, :h, :w].float().cpu().numpy()
        predicted = np.clip(unscale_s2(out, spec.scaling) / 10000.0, 0.0, 1.0)
        result = cloudy.copy()
        for i, band in enumerate(layout.output):
            if band in sample.bands:
                result[list(sample.bands).index(band)] = predicted[i]
        if keep_clear:
            result = np.where(np.asarray(sample.mask, bool)[None], result, cloudy)
        return result.astype(np.float32)

    return predict

