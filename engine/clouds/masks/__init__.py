"""Cloud and cloud-shadow masks of Sentinel-2 scenes.

:mod:`.kinds` lists the methods a user can choose; :mod:`.engine` computes any of them window by
window (:func:`~.engine.open_scene_mask`, :class:`~.engine.SceneMask`) as classes 0 clear, 1 cloud,
2 shadow, 255 nodata; :mod:`.choice` decides the method (``"auto"`` included) and reads mask rasters;
:mod:`.run` is the cloud mask tool's entry point (:func:`~.run.run_cloud_mask`). The methods
themselves: :mod:`.detector` and :mod:`.detector_scene` (the pretrained ukis-csmask networks),
:mod:`.scl` (Sen2Cor classes) and :mod:`.rules` (the DSen2-CR rules).
"""
