"""Snow from Sentinel-2: NDSI, snow maps (single threshold or Let It Snow), snow statistics, snow cover duration.

Entry points, each taking one request (:mod:`.requests`): :func:`.ndsi.compute_ndsi`,
:func:`.mapping.snow_map`, :func:`.statistics.snow_statistics`. The parts:

* :mod:`.classes` the snow map's class codes, colours and tags; :mod:`.parameters` the method,
  its thresholds and the cloud mask choice; :mod:`.requests` the requests;
* :mod:`.scene` the Sentinel-2 bands, the cloud mask and the DEM opened on the image grid;
  :mod:`.grid` the processing grid and its windows; :mod:`.spectra` a window ready for the snow
  tests, from :mod:`.ndsi` (over :mod:`.indices`), :mod:`.cloudmask`, :mod:`.darkclouds`,
  :mod:`.elevation` and :mod:`.rawvalues`;
* :mod:`.threshold` and :mod:`.lis` the two methods; :mod:`.fsc` fractional snow cover;
  :mod:`.output` writing the map; :mod:`.results` what a run returns;
* :mod:`.areas` pixel and class areas; :mod:`.statistics` the figures of a snow map;
  :mod:`.duration` snow cover duration from a series of snow maps; :mod:`.series` a season from
  several Sentinel-2 dates (:func:`.series.snow_series`: dates from :mod:`.dates`, the per-date
  table and chart from :mod:`.chart`).
"""
