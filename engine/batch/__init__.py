"""Batch runs: a job list (one job per scene) run through the engine's entry points, here or on a dask cluster.

:mod:`.jobs` reads and checks the job list; :mod:`.operations` runs each operation through the
same request objects and entry points as the plugin; :mod:`.worker` runs one job (threads sized,
leftovers of killed attempts removed, done marker written); :mod:`.manifest` decides which jobs
are done; :mod:`.runner` runs them all (``--serial`` or on dask.distributed) with progress and a
summary; :mod:`.cli` is ``python -m topoclear batch``. dask is imported only when a cluster runs.
"""
