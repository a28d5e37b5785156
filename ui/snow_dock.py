"""The Snow cover dock: snow maps of the layer on the canvas, in the background, added styled to the map; and a
season (several dates checked among the project's raster layers) made into snow cover duration, with the chart
of the snow area per date shown in the dock."""
from __future__ import annotations

import os
import time
from typing import List, Optional

from qgis.core import QgsMapLayerType, QgsProcessingUtils, QgsProject, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsDoubleSpinBox, QgsFileWidget, QgsRasterBandComboBox, QgsSpinBox
from qgis.PyQt.QtCore import QByteArray, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPixmap
from qgis.PyQt.QtSvg import QSvgRenderer
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QListWidget,
                                 QListWidgetItem, QPushButton, QSizePolicy, QVBoxLayout, QWidget)

from ..engine.errors import InputError
from ..engine.snow.chart import snow_area_svg
from ..engine.snow.mapping import snow_map
from ..engine.snow.parameters import SnowParameters
from ..engine.snow.results import SnowResult
from ..engine.snow.series import SnowSeriesReport, date_scenes, snow_series
from ..qgis_common.layers import file_behind_layer
from ..qgis_common.snow_choices import (CLOUD_CHOICES, GRID_CHOICES, LIS_FIELDS, METHOD_CHOICES, SNOW_MAP_ROLES,
                                        THRESHOLD_FIELDS, ImageChoice, SeasonChoice, SnowMapChoice, Threshold,
                                        band_label, cloud_uses_raster, season_request, sentinel2_input,
                                        snow_map_request, snow_parameters)
from ..qgis_common.i18n import tr
from ..qgis_common.styles import apply_style
from .engine_task import EngineTask
from .extent import ExtentChoice
from .task_dock import TaskDock, dem_combo, raster_combo, sentinel2_combo


#: What each threshold does (the spin boxes' tooltips), by the key of its :class:`Threshold`.
THRESHOLD_TIPS = {
    "ndsi_threshold": "Snow where the NDSI is above this value",
    "red_threshold": "With the red test: snow also needs a red reflectance above this value",
    "ndsi_pass1": "Pass 1 (whole image): snow where the NDSI is above this value",
    "red_pass1": "Pass 1: snow also needs a red reflectance above this value",
    "ndsi_pass2": "Pass 2 (above the snowline, needs a DEM): snow where the NDSI is above this value",
    "red_pass2": "Pass 2: snow also needs a red reflectance above this value",
    "fsnow_lim": "Snowline: the lowest elevation band whose pass-1 snow fraction is above this value",
    "fclear_lim": "Snowline: only elevation bands whose cloud-free fraction is above this value count",
    "fsnow_total_lim": "Snowline: searched only when pass-1 snow covers more than this fraction of the image",
    "red_darkcloud": "Dark clouds: mask clouds whose red reflectance, averaged over blocks, is below this value "
                     "go to the snow tests",
    "darkcloud_scale": "Dark clouds: the size of the averaging blocks, in metres (0: pixel by pixel)",
    "red_backtocloud": "Mask clouds that are not snow stay cloud when their red reflectance is above this value, "
                       "else they become no snow",
    "band_height": "Snowline: the height of the elevation bands, in metres",
}


def _spin(field: Threshold):
    """A spin box for ``field``, at its default (also its clear value), with its tooltip."""
    if field.integer:
        box = QgsSpinBox()
        box.setRange(int(field.minimum), int(field.maximum))
        box.setValue(int(field.default))
        box.setClearValue(int(field.default))
    else:
        box = QgsDoubleSpinBox()
        box.setDecimals(field.decimals)
        box.setRange(field.minimum, field.maximum)
        box.setSingleStep(field.step)
        box.setValue(field.default)
        box.setClearValue(field.default)
        box.setShowClearButton(True)
    box.setToolTip(tr("{what} (default {default:g}; the clear button restores it)").format(
        what=tr(THRESHOLD_TIPS[field.key]), default=field.default))
    return box


def _row(form: QFormLayout, label, widget: QWidget, tip: str) -> None:
    """A form row whose label and field both show ``tip``."""
    form.addRow(label, widget)
    widget.setToolTip(tip)
    shown = form.labelForField(widget)
    if shown is not None:
        shown.setToolTip(tip)


def _menu(combo: QComboBox, choices, intro: str) -> None:
    """``choices`` into ``combo``, each entry's whole label as its tooltip; the combo's tooltip lists them."""
    for choice in choices:
        combo.addItem(tr(choice.label), choice.key)
        combo.setItemData(combo.count() - 1, tr(choice.label), Qt.ToolTipRole)
    combo.setToolTip(intro + "\n" + "\n".join(f"- {tr(c.label)}" for c in choices))


class ChartView(QLabel):
    """An SVG chart drawn at the width the dock gives it (its height follows the chart's aspect ratio): it
    never widens the dock."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._renderer: Optional[QSvgRenderer] = None
        self.svg = ""
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.setMinimumWidth(1)
        self.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.setFixedHeight(0)

    def set_svg(self, text: str) -> None:
        self.svg = text
        self._renderer = QSvgRenderer(QByteArray(text.encode("utf-8"))) if text else None
        self._draw()

    def aspect(self) -> float:
        size = self._renderer.defaultSize() if self._renderer is not None else None
        return size.height() / size.width() if size is not None and size.width() > 0 else 0.5

    def resizeEvent(self, event):  # noqa: N802 (Qt API name)
        super().resizeEvent(event)
        self._draw()

    def _draw(self) -> None:
        if self._renderer is None or not self._renderer.isValid():
            self.clear()
            self.setFixedHeight(0)
            return
        width = max(1, self.width())
        height = max(1, int(round(width * self.aspect())))
        if self.height() != height:
            self.setFixedHeight(height)
        ratio = self.devicePixelRatioF()
        pixmap = QPixmap(int(width * ratio), int(height * ratio))
        pixmap.fill(QColor("white"))
        painter = QPainter(pixmap)
        self._renderer.render(painter)
        painter.end()
        pixmap.setDevicePixelRatio(ratio)
        self.setPixmap(pixmap)


class SnowDock(TaskDock):
    """Pick a Sentinel-2 layer (optional DEM and cloud mask), set the thresholds, run on the canvas
    extent or the whole layer; the styled snow map is added to the project and the snow area shown.

    The engine runs in an :class:`~topoclear.ui.engine_task.EngineTask` (progress bar, Cancel). ``runFinished(ok, message)``
    is emitted when a run ends, after the layer was added.
    """

    OUTPUT_PREFIX = "snowmap"
    CPU_ONLY = "snow maps are computed with NumPy and GDAL; no GPU is used"

    def __init__(self, iface, parent=None) -> None:
        super().__init__(tr("Snow cover"), "TopoClearSnowDock", iface, parent)
        self._window_rows: Optional[int] = None  # smaller windows (tests of cancel)
        self.last_result: Optional[SnowResult] = None
        self._build()

    # -- widgets ------------------------------------------------------------------------------------

    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)

        inputs = QFormLayout()
        self.layer_combo = sentinel2_combo()
        _row(inputs, tr("Sentinel-2 layer"), self.layer_combo, tr(
            "The Sentinel-2 image: a band stack (13-band L1C, 12-band L2A, 10-band) or one band file of a product "
            "(the other bands are found beside it). Preselected: a layer that looks like Sentinel-2 (its bands, "
            "band names or file name), else none"))
        self.dem_combo = dem_combo(self.layer_combo)
        _row(inputs, tr("DEM (snowline)"), self.dem_combo, tr(
            "Elevations for Let It Snow's snowline and pass 2, any CRS and resolution (aligned onto the image grid); "
            "empty: pass 1 only. Preselected: a single-band layer named like a DEM (dem, srtm, elevation...)"))
        self.cloud_mode = QComboBox()
        _menu(self.cloud_mode, CLOUD_CHOICES, tr("Where the clouds come from:"))
        inputs.addRow(tr("Cloud mask"), self.cloud_mode)
        inputs.labelForField(self.cloud_mode).setToolTip(self.cloud_mode.toolTip())
        self.cloud_combo = raster_combo(True)
        _row(inputs, tr("Cloud raster"), self.cloud_combo, tr(
            "The cloud mask or the L2A scene classification (SCL) raster, on any grid covering the image; read by "
            "the cloud mask choices that use a raster"))
        layout.addLayout(inputs)

        bands = QgsCollapsibleGroupBox(tr("Bands [automatic]"))
        bands.setToolTip(tr("Bands are found automatically (from the layout, the band names or the file names) "
                            "unless chosen here"))
        bands.setCollapsed(True)
        band_form = QFormLayout(bands)
        self.band_combos = {}
        for name in SNOW_MAP_ROLES:
            combo = QgsRasterBandComboBox()
            combo.setShowNotSetOption(True, tr("automatic"))
            combo.setBand(-1)
            _row(band_form, band_label(name), combo, tr("The band of the Sentinel-2 layer that holds {band}; "
                                                        "automatic: found by TopoClear").format(band=band_label(name)))
            self.band_combos[name] = combo
        layout.addWidget(bands)
        self._build_method(layout)

        self.extent = ExtentChoice(layout, self, tr("Map the whole Sentinel-2 layer"), tr(
            "Map only the part of the layer shown in the map canvas"))
        self.whole_layer, self.canvas_extent = self.extent.whole_layer, self.extent.canvas_extent

        self.add_output_row(layout, tr("Snow map"), tr(
            "The snow map, a GeoTIFF: 100 snow, 0 no snow, 205 cloud, 255 nodata; empty: a new file in QGIS's "
            "temporary folder"))
        self.add_run_controls(layout, tr("Map the snow of the Sentinel-2 layer in the background; the styled snow "
                                         "map is added to the map and its snow area shown below"))
        self._build_season(layout)
        layout.addWidget(self.result_label)
        layout.addWidget(self.log)
        layout.addStretch(1)
        self.set_body(body)

        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.cloud_mode.currentIndexChanged.connect(self._cloud_changed)
        self._layer_changed(self.layer_combo.currentLayer())
        self._method_changed()
        self._cloud_changed()

    def _build_method(self, layout: QVBoxLayout) -> None:
        """The method menu and each method's thresholds (one group shown at a time)."""
        method = QFormLayout()
        self.method_combo = QComboBox()
        _menu(self.method_combo, METHOD_CHOICES, tr("How snow is told from no snow:"))
        method.addRow(tr("Method"), self.method_combo)
        method.labelForField(self.method_combo).setToolTip(self.method_combo.toolTip())
        layout.addLayout(method)

        self.threshold_box = QgsCollapsibleGroupBox(tr("Single threshold"))
        self.threshold_box.setToolTip(tr("The single-threshold method: NDSI above a threshold, and optionally red "
                                         "reflectance above another"))
        form = QFormLayout(self.threshold_box)
        ndsi, red = THRESHOLD_FIELDS
        self.ndsi_threshold = _spin(ndsi)
        self.red_test = QCheckBox(tr(red.short_label))
        self.red_test.setToolTip(tr("Snow also needs a red reflectance above the value beside (removes water, "
                                    "whose NDSI is often high)"))
        self.red_test.setChecked(True)
        self.red_threshold = _spin(red)
        _row(form, tr(ndsi.short_label), self.ndsi_threshold, self.ndsi_threshold.toolTip())
        form.addRow(self.red_test, self.red_threshold)
        layout.addWidget(self.threshold_box)

        self.lis_box = QgsCollapsibleGroupBox(tr("Let It Snow thresholds"))
        self.lis_box.setToolTip(tr("Let It Snow's thresholds, at their operational defaults"))
        form = QFormLayout(self.lis_box)
        self.lis_spins = {}
        for field in LIS_FIELDS:
            self.lis_spins[field.key] = _spin(field)
            _row(form, tr(field.short_label), self.lis_spins[field.key], self.lis_spins[field.key].toolTip())
        self.band_height = self.lis_spins["band_height"]
        layout.addWidget(self.lis_box)

    def _layer_changed(self, layer) -> None:
        for combo in self.band_combos.values():
            combo.setLayer(layer)
            combo.setBand(-1)

    def _method_changed(self, *_) -> None:
        lis = self.method_combo.currentData() == "lis"
        self.lis_box.setVisible(lis)
        self.threshold_box.setVisible(not lis)
        self.dem_combo.setEnabled(lis)

    def _cloud_changed(self, *_) -> None:
        self.cloud_combo.setEnabled(cloud_uses_raster(self.cloud_mode.currentData()))

    # -- running ------------------------------------------------------------------------------------

    def threshold_values(self):
        """The thresholds as set: :class:`~topoclear.qgis_common.snow_choices.Threshold` key -> value."""
        values = {key: box.value() for key, box in self.lis_spins.items()}
        values.update(ndsi_threshold=self.ndsi_threshold.value(), red_threshold=self.red_threshold.value())
        return values

    def parameters(self) -> SnowParameters:
        return snow_parameters(self.method_combo.currentData(), self.threshold_values(), self.red_test.isChecked())

    def choice(self, layer) -> SnowMapChoice:
        """What the widgets ask for, as the snow tools' shared choice (:class:`ValueError` for a layer
        that is not a GDAL raster)."""
        source = file_behind_layer(layer, tr("Sentinel-2 layer"))
        bands = {name: combo.currentBand() for name, combo in self.band_combos.items()}
        bounds = self.extent.bounds(self.iface, layer)  # None: the whole layer
        method, cloud = self.method_combo.currentData(), self.cloud_mode.currentData()
        dem_layer = self.dem_combo.currentLayer() if method == "lis" else None  # the combo is off otherwise
        cloud_layer = self.cloud_combo.currentLayer() if cloud_uses_raster(cloud) else None
        return SnowMapChoice(
            image=sentinel2_input(ImageChoice(layer=source, bands=bands, bounds=bounds), SNOW_MAP_ROLES),
            output=self.output_path(), method=method, values=self.threshold_values(),
            red_test=self.red_test.isChecked(), dem=file_behind_layer(dem_layer, tr("DEM")), cloud=cloud,
            cloud_raster=file_behind_layer(cloud_layer, tr("Cloud mask")), window_rows=self._window_rows)

    def run(self) -> None:
        if self._task is not None:
            return
        layer = self.layer_combo.currentLayer()
        try:
            if layer is None:
                raise ValueError(tr("Choose a Sentinel-2 layer first"))
            request, notes = snow_map_request(self.choice(layer))
        except (ValueError, InputError) as exc:
            self.show_result(False, str(exc))
            return
        self._layer_name = tr("Snow map - {name}").format(name=layer.name())
        self.start(EngineTask(tr("Snow map of {name}").format(name=layer.name()),
                              lambda monitor: snow_map(request, monitor), self._done))
        for note in notes:
            self.log_message(note)

    def _done(self, ok: bool, result: Optional[SnowResult], error: Optional[str], messages: List[str]) -> None:
        if not self.task_done(ok and result is not None):
            return
        if not ok or result is None:
            self.show_result(False, error or tr("The snow map failed."))
            return
        self.last_result = result
        layer = QgsRasterLayer(result.output, self._layer_name, "gdal")
        if not layer.isValid():
            self.show_result(False, tr("The snow map was written to {path} but QGIS could not open it").format(
                path=result.output))
            return
        apply_style(layer, "snowmap")
        QgsProject.instance().addMapLayer(layer)
        self.last_layer_id = layer.id()
        snowline = ""
        if result.method == "lis":
            snowline = "<br>" + (tr("Snowline: {m:.0f} m").format(m=result.snowline) if result.snowline is not None
                                 else tr("Snowline: none ({why})").format(why=result.snowline_note or tr("not found")))
        self.show_result(True, tr("<b>Snow: {snow:.3f} km²</b> = {percent:.2f} % of the valid area ({valid:.3f} km²)"
                                  "<br>Cloud: {cloud:.2f} %").format(
            snow=result.snow_area_km2, percent=result.snow_percent, valid=result.valid_area_km2,
            cloud=result.cloud_percent) + snowline)

    # -- the season: several dates -> snow cover duration ---------------------------------------------

    def _build_season(self, layout: QVBoxLayout) -> None:
        """The Season section: the dates checked among the raster layers, the period and gap limit, the
        outputs, its Run button and the chart of the snow area per date."""
        self.season_box = QgsCollapsibleGroupBox(tr("Season: snow duration"))
        self.season_box.setToolTip(tr("Snow cover duration, melt-out date and clear observations from several dates"))
        self.season_box.setCollapsed(True)
        box = QVBoxLayout(self.season_box)
        hint = QLabel(tr("Check the dates among the raster layers (method, thresholds, DEM and cloud mask as set "
                         "above; the cloud mask of each date is its product's SCL, or none):"))
        hint.setWordWrap(True)
        box.addWidget(hint)
        self.season_list = QListWidget()
        self.season_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.season_list.setTextElideMode(Qt.ElideMiddle)
        self.season_list.setMinimumWidth(60)
        self.season_list.setMaximumHeight(140)
        self.season_list.setToolTip(tr("The raster layers of the project: check one Sentinel-2 image per date of "
                                       "the season"))
        box.addWidget(self.season_list)
        form = QFormLayout()
        self.season_dates = QLineEdit()
        self.season_dates.setPlaceholderText(tr("[from metadata or names] YYYY-MM-DD, ... in list order"))
        _row(form, tr("Dates"), self.season_dates, tr(
            "The date of each checked layer, in list order (YYYY-MM-DD, comma-separated); empty: read from the "
            "metadata or the file names"))
        self.season_start, self.season_end = QLineEdit(), QLineEdit()
        self.season_start.setPlaceholderText(tr("[first date] YYYY-MM-DD"))
        self.season_end.setPlaceholderText(tr("[last date] YYYY-MM-DD"))
        _row(form, tr("Period start"), self.season_start, tr("First day of the period (YYYY-MM-DD); empty: the "
                                                             "first date"))
        _row(form, tr("Period end"), self.season_end, tr("Last day of the period (YYYY-MM-DD); empty: the last date"))
        self.season_gap = QgsSpinBox()
        self.season_gap.setRange(0, 100000)
        self.season_gap.setValue(15)
        self.season_gap.setClearValue(15)
        _row(form, tr("Max gap (days)"), self.season_gap, tr(
            "A cloudy day is filled from the nearest clear observations when they are at most this many days apart "
            "(Let It Snow: 15)"))
        self.season_grids = QComboBox()
        _menu(self.season_grids, GRID_CHOICES, tr("Images on another grid than the first:"))
        form.addRow(tr("Other grids"), self.season_grids)
        form.labelForField(self.season_grids).setToolTip(self.season_grids.toolTip())
        self.season_output = QgsFileWidget()
        self.season_output.setStorageMode(QgsFileWidget.SaveFile)
        self.season_output.setFilter("GeoTIFF (*.tif *.tiff)")
        self.season_output.lineEdit().setPlaceholderText(tr("[temporary file]"))
        _row(form, tr("Duration"), self.season_output, tr(
            "The snow cover duration, a GeoTIFF with a band each for the duration, melt-out date, onset, first and "
            "last snow day and clear observations; empty: a new file in QGIS's temporary folder"))
        self.season_folder = QgsFileWidget()
        self.season_folder.setStorageMode(QgsFileWidget.GetDirectory)
        self.season_folder.lineEdit().setPlaceholderText(tr("[not kept]"))
        _row(form, tr("Snow maps folder"), self.season_folder, tr("A folder where the snow map of each date is "
                                                                  "kept; empty: not kept"))
        box.addLayout(form)
        self.season_button = QPushButton(tr("Run season"))
        self.season_button.setToolTip(tr("Make the snow cover duration of the checked dates in the background; the "
                                         "styled result is added to the map and the chart drawn below"))
        box.addWidget(self.season_button)
        self.chart = ChartView()
        self.chart.setToolTip(tr("Snow area per date: filled dots clear observations, hollow dots cloudy ones, grey "
                                 "bars the cloud %, the shaded band the period"))
        box.addWidget(self.chart)
        layout.addWidget(self.season_box)
        self.last_season: Optional[SnowSeriesReport] = None
        self.season_button.clicked.connect(self.run_season)
        project = QgsProject.instance()
        project.layersAdded.connect(self.refresh_season_layers)
        project.layersRemoved.connect(self.refresh_season_layers)
        self.refresh_season_layers()

    def refresh_season_layers(self, *_) -> None:
        """List the project's raster layers (checked ones stay checked)."""
        from qgis.PyQt import sip

        if sip.isdeleted(self) or sip.isdeleted(self.season_list):
            return
        checked = set(self.season_layer_ids())
        self.season_list.clear()
        for layer in QgsProject.instance().mapLayers().values():
            if layer.type() != QgsMapLayerType.RasterLayer:
                continue
            item = QListWidgetItem(layer.name())
            item.setData(Qt.UserRole, layer.id())
            item.setToolTip(layer.source())
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if layer.id() in checked else Qt.Unchecked)
            self.season_list.addItem(item)

    def season_layer_ids(self) -> List[str]:
        """The ids of the checked layers, in list order."""
        items = (self.season_list.item(i) for i in range(self.season_list.count()))
        return [item.data(Qt.UserRole) for item in items if item.checkState() == Qt.Checked]

    def check_season_layers(self, layers) -> None:
        """Check ``layers`` (and uncheck the others)."""
        ids = {layer.id() for layer in layers}
        for i in range(self.season_list.count()):
            item = self.season_list.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in ids else Qt.Unchecked)

    def season_choice(self) -> SeasonChoice:
        project = QgsProject.instance()
        images = [file_behind_layer(project.mapLayer(i), tr("Season layer")) for i in self.season_layer_ids()]
        method = self.method_combo.currentData()
        dem_layer = self.dem_combo.currentLayer() if method == "lis" else None
        output = self.season_output.filePath().strip()
        if output and not output.lower().endswith((".tif", ".tiff")):
            output += ".tif"
        if not output:
            stamp = f"{time.strftime('%Y%m%d_%H%M%S')}_{int(time.time() * 1000) % 1000:03d}"
            output = os.path.join(QgsProcessingUtils.tempFolder(), f"snowduration_{stamp}.tif")
        return SeasonChoice(
            images=images, output=output, dates=self.season_dates.text(), method=method,
            values=self.threshold_values(), red_test=self.red_test.isChecked(),
            dem=file_behind_layer(dem_layer, tr("DEM")), cloud=self.cloud_mode.currentData(),
            start=self.season_start.text(), end=self.season_end.text(), max_gap_days=self.season_gap.value(),
            grids=self.season_grids.currentData(), snow_map_folder=self.season_folder.filePath().strip() or None,
            window_rows=self._window_rows)

    def run_season(self) -> None:
        if self._task is not None:
            return
        try:
            request, notes = season_request(self.season_choice())
            date_scenes(request.scenes)  # an image without a date is named now, before the run
        except (ValueError, InputError) as exc:
            self.show_result(False, str(exc))
            return
        self.start(EngineTask(tr("Snow season"), lambda monitor: snow_series(request, monitor), self._season_done))
        for note in notes:
            self.log_message(note)

    def _season_done(self, ok: bool, report: Optional[SnowSeriesReport], error: Optional[str],
                     messages: List[str]) -> None:
        if not self.task_done(ok and report is not None):
            return
        if not ok or report is None:
            self.show_result(False, error or tr("The snow season failed."))
            return
        self.last_season = report
        start, end = report.start.isoformat(), report.end.isoformat()
        name = tr("Snow cover duration {start} to {end}").format(start=start, end=end)
        layer = QgsRasterLayer(report.output, name, "gdal")
        if not layer.isValid():
            self.show_result(False, tr("The snow cover duration was written to {path} but QGIS could not open "
                                       "it").format(path=report.output))
            return
        apply_style(layer, "snow_duration")
        QgsProject.instance().addMapLayer(layer)
        self.last_layer_id = layer.id()
        self.chart.set_svg(snow_area_svg(report.rows, report.start, report.end, width=320, height=240))
        s = report.summary
        self.show_result(True, tr("<b>Snow cover duration: mean {mean:.1f} days</b> (max {max}) over {n} dates, "
                                  "{start} to {end}; {free:.1f} % of the pixels never snow-covered; mean {nobs:.1f} "
                                  "clear observations").format(mean=s.mean_scd, max=s.max_scd, n=len(report.rows),
                                                               start=start, end=end, free=s.snow_free_percent,
                                                               nobs=s.mean_nobs))

    def start(self, task) -> None:
        super().start(task)
        self.season_button.setEnabled(False)

    def task_done(self, ok: bool) -> bool:
        alive = super().task_done(ok)
        if alive:
            self.season_button.setEnabled(True)
        return alive
