"""Cloud removal and everything around it.

Whole-scene removal with a method of the catalogue (:mod:`.methods`: automatic, the fill from the
surroundings, the networks): :mod:`.removal` (the run), :mod:`.observed` (what every output says was
observed, per pixel), :mod:`.prior_inputs` (the fill read back by the networks that start from it),
:mod:`.onnx_runner` (CPU inference through ONNX Runtime), :mod:`.request`
(what a run is asked), :mod:`.weights` (shipped weights, choosing the network), :mod:`.scene`
(the Sentinel-2 input), :mod:`.inputs` (Sentinel-1, terrain and cloud masks on its grid),
:mod:`.tiling` and :mod:`.tiling_defaults` (tiles and blending), :mod:`.tile_inputs` (scaled
tile inputs), :mod:`.device` (device, mixed precision, out-of-memory back-off), :mod:`.writer`
(predictions to output DN) and :mod:`.report`. Also: :mod:`.masks` (cloud-mask methods, SCL,
DSen2-CR rules, pretrained detector), :mod:`.timeseries_fill` (multi-temporal filling) and
:mod:`.evaluation` (metrics of a result against a reference).
"""
