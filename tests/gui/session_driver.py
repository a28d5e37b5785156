"""A whole TopoClear session in the real desktop QGIS, driven from inside it.

Started by ``tests/test_gui_session.py`` as

    xvfb-run -a -s '-screen 0 1280x800x24' qgis --nologo --noversioncheck --profiles-path PROFILES \
        --code tests/gui/session_driver.py

with ``TOPOCLEAR_GUI_CONFIG`` naming a JSON file: ``data`` (the sample folder), ``out`` (the result
JSON), ``shots`` (screenshot folder), ``scratch`` (a folder for outputs), ``quick`` (each algorithm
once on the smallest inputs) and ``timeout_s``. QGIS runs this file once its main window and its
plugins are loaded (the plugin comes from ``QGIS_PLUGINPATH``, enabled in the scratch profile's
``QGIS3.ini``); the work starts from a timer once the event loop runs.

What it does, as a user would: loads real samples as layers; opens every TopoClear algorithm's
Processing dialog, sets its parameters, clicks *Run*, waits, checks the output layer and its style,
then runs it again from the same dialog (*Change Parameters*, *Run*) and from a reopened one (quick
mode: one run); checks every dialog's parameter panel at 1280x800 and
every parameter's description; sets the two docks to about 300 px and checks their buttons and
scroll bars; runs both docks on the whole layer and on the canvas extent; cancels long runs; builds a
graphical-modeler model chaining terrain stack, cloud removal, snow map and snow statistics, saves
it where the toolbox finds models and runs it from its dialog. Every finding goes to the result
JSON (rewritten after every step, so a crash leaves what was done), every dialog and dock to a PNG.
Then QGIS exits.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import time
import traceback

from qgis.core import (QgsApplication, QgsMapLayer, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                       QgsProcessingModelChildParameterSource, QgsProcessingModelOutput,
                       QgsProcessingModelParameter, QgsProcessingParameterRasterLayer, QgsProject, QgsRasterBandStats,
                       QgsRasterLayer, QgsRectangle)
from qgis.gui import QgsCollapsibleGroupBoxBasic
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QEventLoop, QPoint, Qt, QTimer
from qgis.PyQt.QtWidgets import (QAbstractButton, QApplication, QCheckBox, QComboBox, QDialog, QDockWidget, QGroupBox, QLabel,
                                 QLineEdit, QPushButton,
                                 QMessageBox, QRadioButton, QScrollArea, QTextEdit, QWidget)
from qgis.PyQt.QtXml import QDomDocument
from qgis.utils import iface, plugins

try:
    from qgis.PyQt.QtTest import QTest
except ImportError:  # pragma: no cover - PyQt without QtTest
    QTest = None

ALGORITHMS = ["slope", "aspect", "hillshade", "terrainstack", "ndsi", "snowmap", "snowstats", "builddataset",
              "trainmodel", "removeclouds", "evaluate"]
#: Algorithms whose main output is a raster that TopoClear styles.
RASTER_OUTPUT = {"slope": "OUTPUT", "aspect": "OUTPUT", "hillshade": "OUTPUT", "terrainstack": "OUTPUT",
                 "ndsi": "OUTPUT", "snowmap": "OUTPUT", "removeclouds": "OUTPUT"}
#: Algorithms whose main output is a table layer (no renderer).
TABLE_OUTPUT = {"snowstats": "OUTPUT_TABLE", "evaluate": "OUTPUT_TABLE"}
#: Algorithms whose output is not a layer (a folder, a weights file).
FILE_OUTPUT = {"builddataset": "MANIFEST", "trainmodel": "OUTPUT"}
MODEL_NAME = "topoclear_session_chain"
ERROR_WORDS = re.compile(r"error|fail|exception|traceback|cannot|could not|not found|refuse|invalid|needs",
                         re.IGNORECASE)


def now() -> float:
    return time.monotonic()


def plain(html: str) -> str:
    text = re.sub(r"<br\s*/?>", "\n", html or "")
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("&nbsp;", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


class Session:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.quick = bool(config.get("quick"))
        self.data = config["data"]
        self.shots = config["shots"]
        self.scratch = config["scratch"]
        os.makedirs(self.shots, exist_ok=True)
        os.makedirs(self.scratch, exist_ok=True)
        self.shot_no = 0
        self.t0 = now()
        self.layers = {}  # key -> layer id
        self.added = []  # (time, layer id) of every layer added to the project
        self.modal_log = []
        self._seen_modal = set()
        self.messages = []
        self.result = {
            "mode": "quick" if self.quick else "full",
            "runs_expected": 1 if self.quick else 3,
            "dock_runs_expected": 1 if self.quick else 2,
            "model_runs_expected": 1 if self.quick else 2,
            "qgis_version": "", "screen": None, "main_window": None, "plugin_loaded": False,
            "provider_loaded": False, "layers": {}, "algorithms": {}, "extra_checks": {}, "docks": {},
            "cancel": {}, "model": {}, "screenshots": [], "modal_dialogs": self.modal_log,
            "qgis_messages": self.messages, "driver_errors": [], "finished": False, "seconds": None,
        }
        QgsProject.instance().layersAdded.connect(self._layers_added)
        QgsApplication.messageLog().messageReceived.connect(self._message)
        self.watchdog = QTimer()
        self.watchdog.setInterval(250)
        self.watchdog.timeout.connect(self._answer_modal_dialogs)
        self.watchdog.start()
        self.deadline = QTimer()
        self.deadline.setSingleShot(True)
        self.deadline.timeout.connect(self._out_of_time)
        self.deadline.start(int(1000 * max(60, float(config.get("timeout_s", 1500)) - 30)))

    # -- bookkeeping --------------------------------------------------------------------------------
    def save(self) -> None:
        self.result["seconds"] = round(now() - self.t0, 1)
        tmp = self.config["out"] + ".part"
        with open(tmp, "w") as f:
            json.dump(self.result, f, indent=1, default=str)
        os.replace(tmp, self.config["out"])

    def error(self, where: str) -> str:
        text = traceback.format_exc()
        self.result["driver_errors"].append({"where": where, "traceback": text})
        self.save()
        return text.strip().splitlines()[-1]

    def _layers_added(self, layers) -> None:
        for layer in layers:
            self.added.append((now(), layer.id()))

    def _message(self, message, tag, level) -> None:
        if int(level) >= 1 and len(self.messages) < 300:  # warnings and worse
            self.messages.append({"t": round(now() - self.t0, 1), "tag": tag, "level": int(level),
                                  "message": str(message)[:2000]})

    def _answer_modal_dialogs(self) -> None:
        """Answer any message box (and close any other modal dialog) so that nothing blocks the session."""
        try:
            for widget in QApplication.topLevelWidgets():
                if not widget.isVisible():
                    continue
                if isinstance(widget, QMessageBox):
                    answer = None
                    for kind in (QMessageBox.Discard, QMessageBox.Yes, QMessageBox.Ok, QMessageBox.Close,
                                 QMessageBox.No):
                        button = widget.button(kind)
                        if button is not None:
                            answer = button
                            break
                    self.modal_log.append({"t": round(now() - self.t0, 1), "title": widget.windowTitle(),
                                           "text": plain(widget.text()), "informative": plain(widget.informativeText()),
                                           "answered": answer.text() if answer else "closed"})
                    if answer is not None:
                        answer.click()
                    else:
                        widget.close()
                elif isinstance(widget, QDialog) and widget.isModal() and id(widget) not in self._seen_modal:
                    # e.g. the progress dialog of an algorithm that runs on the main thread: noted, left alone
                    self._seen_modal.add(id(widget))
                    self.modal_log.append({"t": round(now() - self.t0, 1), "title": widget.windowTitle(),
                                           "text": widget.metaObject().className(), "answered": "left open"})
        except Exception:  # the watchdog must never raise inside Qt
            pass

    def _out_of_time(self) -> None:
        self.result["driver_errors"].append({"where": "deadline", "traceback": "the session ran out of time"})
        self.save()
        os._exit(4)

    # -- event helpers ------------------------------------------------------------------------------
    @staticmethod
    def pump(seconds: float) -> None:
        end = now() + seconds
        while now() < end:
            QgsApplication.processEvents(QEventLoop.AllEvents, 50)
            time.sleep(0.01)

    @staticmethod
    def wait_until(predicate, timeout: float) -> bool:
        end = now() + timeout
        while now() < end:
            if predicate():
                return True
            QgsApplication.processEvents(QEventLoop.AllEvents, 50)
            time.sleep(0.02)
        return bool(predicate())

    def click(self, button: QAbstractButton) -> None:
        """A left click on the button, as the user's mouse gives it."""
        if QTest is not None and button.isVisible():
            if isinstance(button, (QRadioButton, QCheckBox)):  # on the indicator: a wide one ignores clicks past its text
                QTest.mouseClick(button, Qt.LeftButton, Qt.NoModifier, QPoint(8, button.height() // 2))
            else:
                QTest.mouseClick(button, Qt.LeftButton)
        else:
            button.click()

    def grab(self, widget: QWidget, name: str) -> str:
        self.shot_no += 1
        path = os.path.join(self.shots, f"{self.shot_no:03d}_{name}.png")
        try:
            widget.grab().save(path)
            self.result["screenshots"].append(os.path.basename(path))
        except Exception:
            self.error(f"grab {name}")
        return os.path.basename(path)

    def screen(self, name: str) -> str:
        """The whole X screen (ImageMagick's import, else Qt's own screen grab)."""
        self.render_canvas()
        self.shot_no += 1
        path = os.path.join(self.shots, f"{self.shot_no:03d}_screen_{name}.png")
        done = False
        if shutil.which("import"):
            try:
                done = subprocess.run(["import", "-window", "root", path], timeout=60,
                                      capture_output=True).returncode == 0
            except Exception:
                done = False
        if not done:
            QApplication.primaryScreen().grabWindow(0).save(path)
        self.result["screenshots"].append(os.path.basename(path))
        return os.path.basename(path)

    @staticmethod
    def render_canvas() -> None:
        canvas = iface.mapCanvas()
        canvas.refresh()
        canvas.waitWhileRendering()
        for _ in range(10):
            QgsApplication.processEvents()
        canvas.waitWhileRendering()

    # -- layers -------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.data, *parts)

    def layer(self, key: str):
        layer_id = self.layers.get(key)
        return QgsProject.instance().mapLayer(layer_id) if layer_id else None

    @staticmethod
    def renderer_xml(renderer) -> str:
        doc = QDomDocument()
        root = doc.createElement("r")
        doc.appendChild(root)
        renderer.writeXml(doc, root)
        return doc.toString()

    def layer_info(self, layer) -> dict:
        """Name, kind, renderer type and whether TopoClear styled it (its renderer differs from the one
        QGIS gives the same file by default)."""
        info = {"name": layer.name(), "source": layer.source(), "kind": "raster" if layer.type() ==
                QgsMapLayer.RasterLayer else "vector"}
        if layer.type() != QgsMapLayer.RasterLayer:
            info.update(renderer=None, default_renderer=None, styled=None)
            return info
        renderer = layer.renderer()
        default = QgsRasterLayer(layer.source(), "default", "gdal")
        default_renderer = default.renderer() if default.isValid() else None
        info["renderer"] = renderer.type() if renderer is not None else None
        info["default_renderer"] = default_renderer.type() if default_renderer is not None else None
        if renderer is None or default_renderer is None:
            info["styled"] = False
        else:
            info["styled"] = (renderer.type() != default_renderer.type()
                              or self.renderer_xml(renderer) != self.renderer_xml(default_renderer))
        info["bands"] = layer.bandCount()
        try:
            stats = layer.dataProvider().bandStatistics(
                1, QgsRasterBandStats.Min | QgsRasterBandStats.Max | QgsRasterBandStats.Mean, QgsRectangle(), 250000)
            info["band1_stats"] = [stats.minimumValue, stats.maximumValue, stats.mean]
        except Exception:
            info["band1_stats"] = None
        info["width"], info["height"] = layer.width(), layer.height()
        del default
        return info

    def load_layers(self) -> None:
        ben = ("bigearthnet", "BigEarthNet-S2-Example", "S2B_MSIL2A_20180204T94161_57_38")
        ben_bands = ["B02", "B03", "B04", "B08", "B11"] if self.quick else [
            "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
        tile = "38D_378R_2_3"
        wanted = [
            ("dem", "DEM Big Tujunga (SRTM 30 m)", self.path("dem", "bigtujunga.tif")),
            ("dem_geo", "DEM Rocky Mountain NP (EPSG:4326)", self.path("dem", "rmnp-dem.tif")),
            ("tm_s2", f"TerraMind S2L2A {tile}", self.path("terramind", "S2L2A", f"{tile}.tif")),
            ("tm_s1", f"TerraMind S1RTC {tile}", self.path("terramind", "S1RTC", f"{tile}.tif")),
            ("tm_dem", f"TerraMind DEM {tile}", self.path("terramind", "DEM", f"{tile}.tif")),
            ("s2_19", "S2 L1C cloudy 19_p30 (Nigeria)",
             self.path("sen12ms-cr", "s2_cloudy", "ROIs1868_summer_s2_cloudy_19_p30.tif")),
            ("s1_19", "S1 19_p30", self.path("sen12ms-cr", "s1", "ROIs1868_summer_s1_19_p30.tif")),
            ("s2_136_cloudy", "S2 L1C cloudy 136_p139 (Tatarstan)",
             self.path("sen12ms-cr", "s2_cloudy", "ROIs1970_fall_s2_cloudy_136_p139.tif")),
            ("s2_136_clear", "S2 L1C clear 136_p139 (Tatarstan)",
             self.path("sen12ms-cr", "s2_clear", "ROIs1970_fall_s2_136_p139.tif")),
        ]
        for band in ben_bands:
            wanted.append((f"ben_{band}", f"BigEarthNet snow {band}",
                           self.path(*ben, f"S2B_MSIL2A_20180204T94161_57_38_{band}.tif")))
        for key, name, path in wanted:
            layer = QgsRasterLayer(path, name, "gdal")
            entry = {"name": name, "path": path, "valid": layer.isValid()}
            if layer.isValid():
                QgsProject.instance().addMapLayer(layer)
                self.layers[key] = layer.id()
                entry.update(crs=layer.crs().authid(), width=layer.width(), height=layer.height(),
                             bands=layer.bandCount())
            self.result["layers"][key] = entry
        # the overlapping triplet: one grid, one place
        s2, s1, dem = self.layer("tm_s2"), self.layer("tm_s1"), self.layer("tm_dem")
        if s2 and s1 and dem:
            inter = s2.extent().intersect(s1.extent()).intersect(dem.extent())
            self.result["layers"]["terramind_triplet_overlap_fraction"] = (
                inter.area() / s2.extent().area() if s2.extent().area() else 0.0)
        self.pump(1.0)
        dem = self.layer("dem")
        if dem is not None:
            self.zoom_to(dem.crs(), dem.extent())
        self.save()
        self.screen("layers_loaded")

    # -- Processing dialogs -------------------------------------------------------------------------
    @staticmethod
    def dialog_log(dialog) -> str:
        log = dialog.findChild(QTextEdit, "txtLog")
        return log.toPlainText() if log is not None else ""

    @staticmethod
    def log_paragraphs(dialog) -> list:
        """(text, is an error) of every paragraph of the dialog's log; errors are the ones shown in red."""
        log = dialog.findChild(QTextEdit, "txtLog")
        if log is None:
            return []
        out = []
        for chunk in log.toHtml().split("</p>"):
            if "<p" not in chunk:
                continue
            body = chunk[chunk.index("<p"):]
            red = bool(re.search(r"color:\s*(#ff0000|red)", body, re.IGNORECASE))
            out.append((plain(body), red))
        return out

    @staticmethod
    def message_bar_texts(dialog) -> list:
        texts = []
        try:
            for item in dialog.messageBar().items():
                texts.append(plain(f"{item.title()} {item.text()}"))
        except Exception:
            pass
        return texts

    def layout_check(self, dialog, alg, name: str) -> dict:
        """Does the parameters panel of the dialog, at the size QGIS gives it, need a horizontal scroll bar?
        Checked with the advanced parameters collapsed and expanded."""
        screen = QApplication.primaryScreen().availableGeometry()
        frame = dialog.frameGeometry()
        out = {"dialog_size": [dialog.width(), dialog.height()],
               "fits_screen": screen.contains(frame), "states": {}}
        groups = [sip.cast(g, QgsCollapsibleGroupBoxBasic) for g in dialog.findChildren(QGroupBox)
                  if g.isVisible() and "CollapsibleGroupBox" in g.metaObject().className()]
        out["group_boxes"] = [f"{g.metaObject().className()} {g.title()!r}" for g in dialog.findChildren(QGroupBox)]
        for state in ("collapsed", "expanded"):
            for group in groups:
                group.setCollapsed(state == "collapsed")
            self.pump(0.4)
            areas = []
            for area in dialog.findChildren(QScrollArea):
                if not area.isVisible() or area.widget() is None:
                    continue
                bar = area.horizontalScrollBar()
                areas.append({"name": area.objectName(), "h_bar_visible": bar.isVisible(),
                              "h_bar_maximum": bar.maximum(), "viewport_width": area.viewport().width(),
                              "content_width": area.widget().width(),
                              "content_min_width": area.widget().minimumSizeHint().width()})
            needs = any(a["h_bar_visible"] or a["h_bar_maximum"] > 0 for a in areas)
            out["states"][state] = {"scroll_areas": areas, "needs_horizontal_scroll": needs}
            if groups:
                out["states"][state]["screenshot"] = self.grab(dialog, f"{name}_dialog_{state}")
            if not groups:
                break
        for group in groups:
            group.setCollapsed(True)
        self.pump(0.2)
        out["has_advanced_group"] = bool(groups)
        out["needs_horizontal_scroll"] = any(s["needs_horizontal_scroll"] for s in out["states"].values())
        return out

    @staticmethod
    def description_check(alg) -> dict:
        missing, no_help = [], []
        for definition in alg.parameterDefinitions():
            description = (definition.description() or "").strip()
            if not description or description == definition.name():
                missing.append(definition.name())
            help_text = definition.help() if hasattr(definition, "help") else ""
            if not (help_text or "").strip():
                no_help.append(definition.name())
        outputs_missing = [o.name() for o in alg.outputDefinitions() if not (o.description() or "").strip()]
        return {"parameters": [d.name() for d in alg.parameterDefinitions()], "missing_description": missing,
                "outputs_missing_description": outputs_missing, "parameters_without_tooltip_help": no_help}

    def run_in_dialog(self, dialog, alg_name: str, run_no: int, timeout: float) -> dict:
        """Click Run in the dialog, wait for the end, return what happened."""
        record = {"run": run_no, "ok": False, "error": None, "layers": [], "seconds": None, "results": {}}
        finished = []

        def on_finished(ok, results):
            finished.append((bool(ok), dict(results or {})))

        dialog.algorithmFinished.connect(on_finished)
        log_before = self.dialog_log(dialog)
        paragraphs_before = len(self.log_paragraphs(dialog))
        modal_before = len(self.modal_log)
        added_before = len(self.added)
        try:
            record["dialog_parameters"] = {k: f"{type(v).__name__}: {v!r}"[:300]
                                           for k, v in dialog.createProcessingParameters().items()}
        except Exception as exc:  # an invalid value: the dialog says so itself when Run is clicked
            record["dialog_parameters"] = f"{type(exc).__name__}: {exc}"
        run_button = dialog.runButton()
        if not run_button.isVisible():
            # after a run the dialog shows its log and "Change Parameters" instead of "Run"
            change = next((b for b in dialog.findChildren(QPushButton)
                           if b.isVisible() and "change parameters" in b.text().replace("&", "").lower()), None)
            record["change_parameters_clicked"] = change is not None
            if change is not None:
                self.click(change)
                self.pump(0.5)
        record["run_button"] = {"text": run_button.text(), "visible": run_button.isVisible(),
                                "enabled": run_button.isEnabled()}
        start = now()
        self.click(run_button)

        def over():
            if finished:
                return True
            if now() - start > 3 and run_button.isEnabled():  # never started, or ended without the signal
                return True
            return False

        self.wait_until(over, timeout)
        self.pump(0.5)
        record["seconds"] = round(now() - start, 2)
        try:
            dialog.algorithmFinished.disconnect(on_finished)
        except TypeError:
            pass
        log = self.dialog_log(dialog)
        new_log = log[len(log_before):] if log.startswith(log_before) else log
        record["log_tail"] = new_log[-3000:]
        red = [text for text, is_error in self.log_paragraphs(dialog)[paragraphs_before:] if is_error and text]
        problems = red or [line.strip() for line in new_log.splitlines() if ERROR_WORDS.search(line)][-5:]
        record["log_errors"] = red
        bar = self.message_bar_texts(dialog)
        modal = self.modal_log[modal_before:]
        if finished:
            ok, results = finished[0]
            record["ok"] = ok
            record["results"] = {k: (v if isinstance(v, (int, float, str, type(None))) else str(v))
                                 for k, v in results.items()}
        elif not run_button.isEnabled():
            record["error"] = f"timed out after {timeout:.0f} s"
        else:
            started = "Algorithm started" in new_log
            record["error"] = ("ended without the algorithmFinished signal (results not handled)" if started
                               else "the run did not start")
        if not record["ok"]:
            details = problems + bar + [f"{m['title']}: {m['text']} {m.get('informative', '')}".strip()
                                        for m in modal if m.get("answered") != "left open"]
            joined = " | ".join(d for d in details if d)
            record["error"] = (record["error"] + ": " if record["error"] else "") + (joined or new_log[-600:])
        record["message_bar"] = bar
        record["modal_dialogs"] = [m for m in modal if m.get("answered") != "left open"]
        record["progress_dialogs"] = len(modal) - len(record["modal_dialogs"])
        record["model_processed_ok"] = "Model processed OK" in new_log
        for _, layer_id in self.added[added_before:]:
            layer = QgsProject.instance().mapLayer(layer_id)
            if layer is not None:
                record["layers"].append(self.layer_info(layer))
        return record

    def evaluate_run(self, alg_name: str, record: dict) -> None:
        """Whether the run did what the user expects: its output layer added and, for rasters, styled."""
        failures = []
        if not record["ok"]:
            failures.append("run failed: " + (record.get("error") or "no error text"))
        else:
            key = RASTER_OUTPUT.get(alg_name) or TABLE_OUTPUT.get(alg_name)
            if key:
                out = str(record["results"].get(key) or "")
                layers = [l for l in record["layers"] if out and (l["source"].split("|")[0] == out
                                                                  or l["source"].startswith(out))]
                if not layers and alg_name in TABLE_OUTPUT:
                    layers = [l for l in record["layers"] if l["kind"] == "vector"]
                if not layers:
                    failures.append(f"no output layer added for {key} ({out or 'no output path'}); "
                                    f"layers added: {[l['name'] for l in record['layers']]}")
                else:
                    main = layers[0]
                    record["layer_name"] = main["name"]
                    record["renderer"] = main.get("renderer")
                    record["styled"] = main.get("styled")
                    if alg_name in RASTER_OUTPUT and not main.get("styled"):
                        failures.append(f"output layer {main['name']!r} not styled: renderer {main.get('renderer')} "
                                        f"is QGIS's default ({main.get('default_renderer')})")
                for extra in record["layers"]:
                    if extra["kind"] == "raster" and extra is not (layers[0] if layers else None) \
                            and not extra.get("styled"):
                        failures.append(f"extra output layer {extra['name']!r} not styled "
                                        f"(renderer {extra.get('renderer')})")
            else:
                key = FILE_OUTPUT.get(alg_name)
                out = str(record["results"].get(key) or "")
                record["output"] = out
                if not out or not os.path.exists(out):
                    failures.append(f"{key} not written ({out or 'no path in the results'})")
        record["failures"] = failures
        record["passed"] = not failures

    def algorithm_parameters(self, name: str, done: dict):
        """(parameters, reason to skip) of the algorithm's dialog; ``done`` holds earlier results."""
        L = self.layers.get
        registry = QgsApplication.processingRegistry()
        dem = L("dem_geo") if self.quick else L("dem")
        mtd = self.path("sentinel2-safe", "S2A_MSIL2A_20150826T185436_N0212_R070_T11SLT_20210412T023147",
                        "MTD_TL.xml")
        if name == "slope":
            return {"INPUT": dem, "UNITS": 0}, None
        if name == "aspect":
            return {"INPUT": dem}, None
        if name == "hillshade":
            params = {"INPUT": dem}
            if not self.quick:
                params["METADATA"] = mtd
            return params, None
        if name == "terrainstack":
            return {"INPUT": L("tm_dem"), "REFERENCE": L("tm_s2")}, None
        if name == "ndsi":
            return {"INPUT": L("ben_B03")}, None
        if name == "snowmap":
            params = {"INPUT": L("ben_B03"), "METHOD": 0 if not self.quick else 1}
            if not self.quick:
                params["FSC"] = "TEMPORARY_OUTPUT"
            return params, None
        if name == "snowstats":
            snow = done.get("snowmap")
            if not snow:
                return None, "no snow map: topoclear:snowmap did not produce one"
            return {"INPUT": snow}, None
        if name == "builddataset":
            return {"CLOUDY": L("s2_136_cloudy"), "CLEAR": L("s2_136_clear"), "PATCH_SIZE": 128,
                    "BLOCK_PATCHES": 1}, None
        if name == "trainmodel":
            manifest = done.get("builddataset")
            if not manifest:
                return None, "no training manifest: topoclear:builddataset did not produce one"
            options = registry.algorithmById("topoclear:trainmodel").parameterDefinition("MODEL").options()
            model = options.index("unet") if "unet" in options else 0
            return {"DATASET": manifest, "MODEL": model, "EPOCHS": 1, "BATCH_SIZE": 2, "PATCH_SIZE": 64,
                    "STEPS_PER_EPOCH": 1 if self.quick else 2, "DEVICE": "cpu", "NO_S1": True}, None
        if name == "removeclouds":
            return {"INPUT": L("tm_s2"), "S1": L("tm_s1"), "DEM": L("tm_dem"), "MODEL": 0, "DEVICE": "cpu"}, None
        if name == "evaluate":
            prediction = done.get("removeclouds")
            if not prediction:
                return None, "no prediction: topoclear:removeclouds did not produce one"
            return {"PREDICTION": prediction, "REFERENCE": L("tm_s2"), "OUTPUT_HTML": "TEMPORARY_OUTPUT"}, None
        return {}, None

    def run_algorithms(self) -> None:
        import processing

        registry = QgsApplication.processingRegistry()
        provider = registry.providerById("topoclear")
        listed = sorted(a.name() for a in provider.algorithms()) if provider else []
        self.result["provider_algorithms"] = listed
        done = {}
        for name in ALGORITHMS:
            alg_id = f"topoclear:{name}"
            entry = {"id": alg_id, "runs": [], "layout": None, "descriptions": None, "skipped": None,
                     "screenshots": []}
            self.result["algorithms"][name] = entry
            alg = registry.algorithmById(alg_id)
            if alg is None:
                entry["skipped"] = "not registered"
                self.save()
                continue
            try:
                entry["descriptions"] = self.description_check(alg)
                entry["can_execute"] = list(alg.canExecute())
                params, skip = self.algorithm_parameters(name, done)
                if skip:
                    entry["skipped"] = skip
                    self.save()
                    continue
                entry["parameters_set"] = {k: str(v) for k, v in params.items()}
                timeout = 900 if name == "trainmodel" else 420
                dialogs = []
                dialog = processing.createAlgorithmDialog(alg_id, params)
                dialogs.append(dialog)
                dialog.show()
                dialog.raise_()
                self.pump(0.8)
                entry["layout"] = self.layout_check(dialog, alg, name)
                entry["screenshots"].append(self.grab(dialog, f"{name}_dialog"))
                plan = [("new dialog", dialog)]
                if not self.quick:
                    plan += [("same dialog: Change Parameters, Run", dialog), ("reopened dialog", None)]
                for run_no, (how, target) in enumerate(plan, start=1):
                    if target is None:
                        target = processing.createAlgorithmDialog(alg_id, params)
                        dialogs.append(target)
                        target.show()
                        target.raise_()
                        self.pump(0.8)
                    record = self.run_in_dialog(target, name, run_no, timeout)
                    record["how"] = how
                    self.evaluate_run(name, record)
                    record["screenshot"] = self.grab(target, f"{name}_run{run_no}")
                    entry["runs"].append(record)
                    if record["ok"] and name not in done:
                        key = RASTER_OUTPUT.get(name) or FILE_OUTPUT.get(name)
                        value = record["results"].get(key) if key else None
                        if value and os.path.exists(str(value)):
                            done[name] = str(value)
                    self.save()
                if name == "hillshade":
                    shown = QgsProject.instance().mapLayer(self.added[-1][1]) if self.added else None
                    if shown is not None:
                        self.zoom_to(shown.crs(), shown.extent())
                    self.screen("after_terrain_runs")
                for d in dialogs:
                    d.close()
                    d.deleteLater()
                self.pump(0.3)
            except Exception:
                entry["driver_error"] = self.error(f"algorithm {name}")
            self.save()
        self.screen("after_all_algorithms")
        if not self.quick:
            self.removeclouds_defaults()

    def removeclouds_defaults(self) -> None:
        """The cloud removal with only what a user gives first: a cloudy Sentinel-2 image and its Sentinel-1,
        every other parameter left at its default."""
        import processing

        check = {"what": "topoclear:removeclouds with its defaults on Sentinel-2 + Sentinel-1 (no DEM)"}
        self.result["extra_checks"]["removeclouds_defaults"] = check
        try:
            params = {"INPUT": self.layers.get("s2_19"), "S1": self.layers.get("s1_19")}
            dialog = processing.createAlgorithmDialog("topoclear:removeclouds", params)
            dialog.show()
            self.pump(0.8)
            record = self.run_in_dialog(dialog, "removeclouds", 1, 600)
            self.evaluate_run("removeclouds", record)
            record["screenshot"] = self.grab(dialog, "removeclouds_defaults")
            check.update(record)
            dialog.close()
            dialog.deleteLater()
        except Exception:
            check["driver_error"] = self.error("removeclouds defaults")
        self.save()

    # -- docks --------------------------------------------------------------------------------------
    def docks(self):
        plugin = plugins.get("topoclear")
        found = {}
        for dock in getattr(plugin, "docks", []) or []:
            found[dock.objectName()] = dock
        return found.get("TopoClearSnowDock"), found.get("TopoClearCloudDock")

    def dock_layout(self, dock, label: str) -> dict:
        """At about 300 px: run / cancel buttons visible without scrolling sideways, content not cut off,
        a vertical scroll bar when the content is taller than the dock."""
        main = iface.mainWindow()
        out = {"requested_width": 300}
        main.resizeDocks([dock], [300], Qt.Horizontal)
        self.pump(0.8)
        scroll = dock.widget()
        out["dock_width"] = dock.width()
        out["dock_min_width"] = dock.minimumSizeHint().width()
        if not isinstance(scroll, QScrollArea) or scroll.widget() is None:
            out["error"] = f"the dock's widget is a {type(scroll).__name__}, not a scroll area"
            return out
        viewport, body = scroll.viewport(), scroll.widget()

        def measure() -> dict:
            m = {"viewport_width": viewport.width(), "viewport_height": viewport.height(),
                 "content_width": body.width(), "content_height": body.height(),
                 "content_min_width": body.minimumSizeHint().width(),
                 "h_policy": int(scroll.horizontalScrollBarPolicy()),
                 "h_bar_visible": scroll.horizontalScrollBar().isVisible(),
                 "v_policy": int(scroll.verticalScrollBarPolicy()),
                 "v_bar_visible": scroll.verticalScrollBar().isVisible(),
                 "v_bar_maximum": scroll.verticalScrollBar().maximum()}
            buttons = {}
            for key in ("run_button", "cancel_button"):
                button = getattr(dock, key, None)
                if button is None:
                    buttons[key] = {"exists": False}
                    continue
                left = button.mapTo(viewport, QPoint(0, 0)).x()
                right = left + button.width()
                buttons[key] = {"exists": True, "left": left, "right": right, "width": button.width(),
                                "text_width": button.fontMetrics().horizontalAdvance(button.text()),
                                "visible_without_h_scroll": button.isVisible() and left >= 0
                                and right <= viewport.width()}
            m["buttons"] = buttons
            cut = []
            for widget in body.findChildren(QWidget):
                if not widget.isVisible() or isinstance(widget, QScrollArea):
                    continue
                if not isinstance(widget, (QAbstractButton, QComboBox, QLineEdit, QLabel)):
                    continue
                right = widget.mapTo(viewport, QPoint(widget.width(), 0)).x()
                if right > viewport.width() + 1:
                    text = widget.text() if hasattr(widget, "text") and callable(widget.text) else ""
                    cut.append(f"{type(widget).__name__} {plain(str(text))[:40]!r} ends at {right} px > "
                               f"{viewport.width()} px")
            m["widgets_cut_off"] = cut[:30]
            m["content_cut_off_px"] = max(0, body.width() - viewport.width())
            return m

        natural = measure()
        out["natural_height"] = natural
        out["screenshot"] = self.grab(dock, f"{label}_dock_300px")
        # force the content to overflow vertically: the dock made short
        main.resizeDocks([dock], [240], Qt.Vertical)
        self.pump(0.8)
        short = measure()
        out["short_height"] = short
        overflow = short["content_height"] > short["viewport_height"]
        out["vertical_overflow"] = overflow
        out["vertical_scroll_available"] = (not overflow) or (short["v_bar_visible"] and short["v_bar_maximum"] > 0)
        out["buttons_visible_without_h_scroll"] = all(
            b.get("visible_without_h_scroll") for b in natural["buttons"].values())
        out["content_cut_off_px"] = natural["content_cut_off_px"]
        out["screenshot_short"] = self.grab(dock, f"{label}_dock_300px_short")
        return out

    def wait_dock(self, dock, timeout: float):
        received = []

        def got(ok, message):
            received.append((bool(ok), message))

        dock.runFinished.connect(got)
        self.wait_until(lambda: bool(received), timeout)
        try:
            dock.runFinished.disconnect(got)
        except TypeError:
            pass
        self.pump(0.5)
        return received[0] if received else None

    def dock_run(self, dock, label: str, mode: str, run_no: int, input_layer, timeout: float = 420) -> dict:
        record = {"mode": mode, "run": run_no}
        added_before = len(self.added)
        start = now()
        dock_log_before = dock.log.toPlainText() if hasattr(dock, "log") else ""
        self.click(dock.run_button)
        got = self.wait_dock(dock, timeout)
        record["seconds"] = round(now() - start, 2)
        if got is None:
            record.update(ok=False, error=f"no runFinished within {timeout:.0f} s")
        else:
            record["ok"], record["message"] = got[0], plain(got[1])
            if not got[0]:
                record["error"] = plain(got[1])
        record["log_tail"] = (dock.log.toPlainText() if hasattr(dock, "log") else "")[-1500:]
        if dock_log_before and record["log_tail"] == dock_log_before[-1500:]:
            record["log_tail"] = ""
        layers = [QgsProject.instance().mapLayer(i) for _, i in self.added[added_before:]]
        layers = [l for l in layers if l is not None]
        record["layers"] = [self.layer_info(l) for l in layers]
        failures = []
        if not record["ok"]:
            failures.append("run failed: " + str(record.get("error")))
        elif not layers:
            failures.append("no layer added")
        else:
            main = record["layers"][0]
            record["layer_name"], record["renderer"], record["styled"] = main["name"], main["renderer"], main["styled"]
            if not main["styled"]:
                failures.append(f"layer {main['name']!r} not styled (renderer {main['renderer']})")
            if mode == "canvas extent" and input_layer is not None:
                out_layer = layers[0]
                whole = input_layer.extent()
                part = out_layer.extent()
                record["output_extent_fraction"] = round(part.area() / whole.area(), 3) if whole.area() else None
                if record["output_extent_fraction"] is not None and record["output_extent_fraction"] > 0.9:
                    failures.append(f"canvas-extent run covers {record['output_extent_fraction']:.0%} of the layer")
        record["failures"] = failures
        record["passed"] = not failures
        record["screenshot"] = self.grab(dock, f"{label}_dock_{mode.replace(' ', '_')}_run{run_no}")
        return record

    def canvas_to_centre(self, layer) -> None:
        """Zoom the canvas to the central half (in each direction) of ``layer``."""
        e = layer.extent()
        w, h = e.width(), e.height()
        self.zoom_to(layer.crs(), QgsRectangle(e.xMinimum() + w / 4, e.yMinimum() + h / 4,
                                               e.xMaximum() - w / 4, e.yMaximum() - h / 4))

    def zoom_to(self, crs, extent) -> None:
        """The project and the canvas in ``crs``, the canvas showing ``extent`` (in that CRS)."""
        canvas = iface.mapCanvas()
        QgsProject.instance().setCrs(crs)
        canvas.setDestinationCrs(crs)
        self.pump(0.5)
        canvas.setExtent(extent)
        self.pump(0.3)
        self.render_canvas()

    def extent_choice(self, dock) -> dict:
        radios = [b for b in dock.findChildren(QRadioButton)]
        whole = next((b for b in radios if "whole" in b.text().lower()), None)
        canvas = next((b for b in radios if "extent" in b.text().lower() or "canvas" in b.text().lower()), None)
        return {"whole": whole, "canvas": canvas, "texts": [b.text() for b in radios]}

    def run_docks(self) -> None:
        snow, cloud = self.docks()
        self.result["docks"]["found"] = {"snow": snow is not None, "cloud": cloud is not None}
        if snow is None or cloud is None:
            self.save()
            return
        main = iface.mainWindow()
        for dock in (snow, cloud):
            dock.setFloating(False)
            dock.show()
            dock.raise_()
        self.pump(1.0)
        for label, dock in (("snow", snow), ("cloud", cloud)):
            try:
                self.result["docks"][label] = {"title": dock.windowTitle(), "layout": self.dock_layout(dock, label),
                                               "runs": []}
            except Exception:
                self.result["docks"][label] = {"driver_error": self.error(f"{label} dock layout"), "runs": []}
            self.save()
        main.resizeDocks([snow, cloud], [400, 400], Qt.Vertical)
        self.pump(0.5)
        self.screen("docks_300px")
        repeats = 1 if self.quick else 2
        # Snow cover dock on the BigEarthNet snow patch
        try:
            entry = self.result["docks"]["snow"]
            layer = self.layer("ben_B03")
            snow.layer_combo.setLayer(layer)
            self.pump(0.3)
            choice = self.extent_choice(snow)
            entry["extent_choice"] = {"offered": choice["canvas"] is not None, "radio_buttons": choice["texts"]}
            for mode, button in (("whole layer", choice["whole"]), ("canvas extent", choice["canvas"])):
                if button is None:
                    entry["runs"].append({"mode": mode, "ok": False, "passed": False,
                                          "failures": [f"the dock offers no {mode} choice"]})
                    continue
                if mode == "canvas extent":
                    self.canvas_to_centre(layer)
                else:
                    self.zoom_to(layer.crs(), layer.extent())
                self.click(button)
                self.pump(0.2)
                for k in range(1, repeats + 1):
                    entry["runs"].append(self.dock_run(snow, "snow", mode, k, layer))
                    self.save()
            self.zoom_to(layer.crs(), layer.extent())
            self.screen("snow_dock_runs")
        except Exception:
            self.result["docks"]["snow"]["driver_error"] = self.error("snow dock runs")
        # Cloud removal dock on the TerraMind triplet (CRT-UNet)
        try:
            entry = self.result["docks"]["cloud"]
            s2, s1, dem = self.layer("tm_s2"), self.layer("tm_s1"), self.layer("tm_dem")
            cloud.s2_combo.setLayer(s2)
            cloud.s1_combo.setLayer(s1)
            cloud.dem_combo.setLayer(dem)
            self.pump(0.3)
            index = cloud.model_combo.findData("crt_unet")
            if index >= 0:
                cloud.model_combo.setCurrentIndex(index)
            device = cloud.device_combo.findData("cpu")
            if device >= 0:
                cloud.device_combo.setCurrentIndex(device)
            entry["model"] = cloud.model_combo.currentData()
            choice = self.extent_choice(cloud)
            entry["extent_choice"] = {"offered": choice["canvas"] is not None, "radio_buttons": choice["texts"]}
            modes = [("whole layer", choice["whole"]), ("canvas extent", choice["canvas"])]
            for mode, button in modes:
                if button is None and mode == "whole layer":
                    button = "implicit"  # the dock always runs on the whole layer
                if button is None:
                    entry["runs"].append({"mode": mode, "ok": False, "passed": False,
                                          "failures": [f"the dock offers no {mode} choice (radio buttons: "
                                                       f"{choice['texts'] or 'none'})"]})
                    continue
                if mode == "canvas extent":
                    self.canvas_to_centre(s2)
                else:
                    self.zoom_to(s2.crs(), s2.extent())
                if button != "implicit":
                    self.click(button)
                for k in range(1, repeats + 1):
                    entry["runs"].append(self.dock_run(cloud, "cloud", mode, k, s2))
                    self.save()
            self.zoom_to(s2.crs(), s2.extent())
            self.screen("cloud_dock_runs")
        except Exception:
            self.result["docks"]["cloud"]["driver_error"] = self.error("cloud dock runs")
        self.save()

    # -- cancel -------------------------------------------------------------------------------------
    def cancel_dock_run(self) -> None:
        """Start a long cloud removal in the dock (DSen2-CR on a 256 x 256 patch, CPU), click Cancel."""
        _, cloud = self.docks()
        check = {"what": "Cloud removal dock: DSen2-CR on S2 19_p30 + S1, Cancel clicked while running"}
        self.result["cancel"]["cloud_dock"] = check
        if cloud is None:
            check["failures"] = ["no cloud dock"]
            self.save()
            return
        try:
            folder = os.path.join(self.scratch, "cancel_dock")
            os.makedirs(folder, exist_ok=True)
            output = os.path.join(folder, "cloudfree_cancelled.tif")
            cloud.s2_combo.setLayer(self.layer("s2_19"))
            cloud.s1_combo.setLayer(self.layer("s1_19"))
            cloud.dem_combo.setLayer(None)
            self.pump(0.3)
            index = cloud.model_combo.findData("dsen2cr")
            if index >= 0:
                cloud.model_combo.setCurrentIndex(index)
            check["model"] = cloud.model_combo.currentData()
            # small tiles, one at a time: a run of many tiles, long enough to be cancelled on a fast machine
            whole = self.extent_choice(cloud)["whole"]
            if whole is not None:
                whole.setChecked(True)  # the dock runs left it on the canvas extent, elsewhere by now
            cloud.tile_spin.setValue(32)
            cloud.overlap_spin.setValue(8)
            cloud.batch_spin.setValue(1)
            cloud.output_widget.setFilePath(output)
            received = []
            cloud.runFinished.connect(lambda ok, msg: received.append((bool(ok), msg)))
            self.click(cloud.run_button)
            start = now()
            # wait until the run is really under way: a message in the log or progress, at most 20 s
            self.wait_until(lambda: received or cloud.progress.value() > 0
                            or "Device" in cloud.log.toPlainText(), 20)
            self.pump(0.5)
            check["started_seconds"] = round(now() - start, 2)
            check["progress_at_cancel"] = cloud.progress.value()
            check["cancel_enabled"] = cloud.cancel_button.isEnabled()
            if received:
                check["finished_before_cancel"] = True
            cancel_at = now()
            self.click(cloud.cancel_button)
            self.wait_until(lambda: bool(received), 300)
            self.pump(0.5)
            check["cancel_latency_s"] = round(now() - cancel_at, 2) if received else None
            check["ok"], check["message"] = (received[0][0], plain(received[0][1])) if received else (None, None)
            check["output_exists"] = os.path.exists(output)
            check["files_left"] = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*")))
            check["log_tail"] = cloud.log.toPlainText()[-1500:]
            check["screenshot"] = self.grab(cloud, "cloud_dock_cancelled")
            failures = []
            if not received:
                failures.append("the run did not end within 300 s of Cancel")
            elif check.get("finished_before_cancel"):
                failures.append("the run ended before Cancel could be clicked (inconclusive)")
            elif received[0][0]:
                failures.append("the run completed although Cancel was clicked")
            if check["output_exists"]:
                failures.append(f"the output {output} exists after the cancel")
            if check["files_left"]:
                failures.append(f"files left in the output folder: {check['files_left']}")
            if check.get("cancel_latency_s") is not None and check["cancel_latency_s"] > 30:
                failures.append(f"the cancel took {check['cancel_latency_s']:.0f} s to take effect")
            check["failures"] = failures
            check["passed"] = not failures
            cloud.output_widget.setFilePath("")
        except Exception:
            check["driver_error"] = self.error("cancel in the dock")
        self.save()

    def cancel_dialog_run(self) -> None:
        """Start the same long cloud removal from its Processing dialog, click the dialog's Cancel."""
        import processing

        check = {"what": "Processing dialog of topoclear:removeclouds: DSen2-CR on S2 19_p30 + S1, Cancel clicked"}
        self.result["cancel"]["processing_dialog"] = check
        try:
            folder = os.path.join(self.scratch, "cancel_dialog")
            os.makedirs(folder, exist_ok=True)
            output = os.path.join(folder, "cloudfree_cancelled.tif")
            registry = QgsApplication.processingRegistry()
            alg = registry.algorithmById("topoclear:removeclouds")
            options = alg.parameterDefinition("MODEL").options()
            try:  # the paper's DSen2-CR (not the variant from the fill, which is much faster), by its catalogue key
                from topoclear.qgis_common.cloud_choices import keys, model_choices

                model = keys(model_choices()).index("dsen2cr")
            except (ImportError, ValueError):
                model = next((i for i, o in enumerate(options) if o.lower().startswith("dsen2-cr")), 2)
            params = {"INPUT": self.layers.get("s2_19"), "S1": self.layers.get("s1_19"), "MODEL": model,
                      "DEVICE": "cpu", "TILE_SIZE": 32, "OVERLAP": 8, "BATCH_SIZE": 1, "OUTPUT": output}
            dialog = processing.createAlgorithmDialog("topoclear:removeclouds", params)
            dialog.show()
            self.pump(0.8)
            finished = []
            dialog.algorithmFinished.connect(lambda ok, res: finished.append(bool(ok)))
            log_before = self.dialog_log(dialog)
            modal_before = len(self.modal_log)
            run_button = dialog.runButton()
            self.click(run_button)
            start = now()
            started = self.wait_until(lambda: finished or not run_button.isEnabled(), 5)
            check["started"] = bool(started)
            check["not_started_because"] = [f"{m['title']}: {m['text']}" for m in self.modal_log[modal_before:]]
            if started:
                self.wait_until(lambda: finished or dialog.cancelButton().isEnabled(), 10)
                self.pump(4.0)
            check["cancel_enabled"] = dialog.cancelButton().isEnabled()
            check["finished_before_cancel"] = bool(finished)
            cancel_at = now()
            if dialog.cancelButton().isEnabled():
                self.click(dialog.cancelButton())
            self.wait_until(lambda: finished or (run_button.isEnabled() and now() - cancel_at > 1), 300)
            self.pump(0.5)
            check["cancel_latency_s"] = round(now() - cancel_at, 2)
            check["started_seconds"] = round(cancel_at - start, 2)
            log = self.dialog_log(dialog)
            check["log_tail"] = (log[len(log_before):] if log.startswith(log_before) else log)[-1500:]
            check["finished_signal"] = finished[:1]
            check["output_exists"] = os.path.exists(output)
            check["files_left"] = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*")))
            check["screenshot"] = self.grab(dialog, "removeclouds_dialog_cancelled")
            failures = []
            if not started:
                failures.append("the run did not start: " + ("; ".join(check["not_started_because"])
                                                              or "no message"))
            elif not check["cancel_enabled"] and not finished:
                failures.append("the dialog's Cancel button was not enabled while the algorithm ran")
            if check["finished_before_cancel"]:
                failures.append("the run ended before Cancel could be clicked (inconclusive)")
            elif finished and finished[0]:
                failures.append("the run completed although Cancel was clicked")
            if not run_button.isEnabled():
                failures.append("the dialog still runs 300 s after Cancel")
            if check["output_exists"]:
                failures.append(f"the output {output} exists after the cancel")
            if check["files_left"]:
                failures.append(f"files left in the output folder: {check['files_left']}")
            if check["cancel_latency_s"] > 30:
                failures.append(f"the cancel took {check['cancel_latency_s']:.0f} s to take effect")
            check["failures"] = failures
            check["passed"] = not failures
            dialog.close()
            dialog.deleteLater()
        except Exception:
            check["driver_error"] = self.error("cancel in the dialog")
        self.save()

    # -- graphical modeler --------------------------------------------------------------------------
    @staticmethod
    def build_model(name: str, stack_into_removeclouds: bool) -> QgsProcessingModelAlgorithm:
        model = QgsProcessingModelAlgorithm(name, "TopoClear session models")
        for key, label in (("dem", "DEM"), ("s2", "Sentinel-2 image"), ("s1", "Sentinel-1 image")):
            model.addModelParameter(QgsProcessingParameterRasterLayer(key, label), QgsProcessingModelParameter(key))
        P = QgsProcessingModelChildParameterSource

        def child(alg_id, child_id, sources, outputs=()):
            c = QgsProcessingModelChildAlgorithm(alg_id)
            c.setChildId(child_id)
            c.setDescription(child_id)
            for param, source in sources.items():
                c.addParameterSources(param, [source])
            model_outputs = {}
            for output_name, out_label in outputs:
                out = QgsProcessingModelOutput(out_label, out_label)
                out.setChildId(child_id)
                out.setChildOutputName(output_name)
                model_outputs[out_label] = out
            c.setModelOutputs(model_outputs)
            model.addChildAlgorithm(c)
            return c

        child("topoclear:terrainstack", "terrainstack",
              {"INPUT": P.fromModelParameter("dem"), "REFERENCE": P.fromModelParameter("s2")},
              () if stack_into_removeclouds else (("OUTPUT", "Terrain stack"),))
        dem_source = P.fromChildOutput("terrainstack", "OUTPUT") if stack_into_removeclouds else \
            P.fromModelParameter("dem")
        child("topoclear:removeclouds", "removeclouds",
              {"INPUT": P.fromModelParameter("s2"), "S1": P.fromModelParameter("s1"), "DEM": dem_source,
               "MODEL": P.fromStaticValue(0), "DEVICE": P.fromStaticValue("cpu")},
              (("OUTPUT", "Cloud-free image"),))
        child("topoclear:snowmap", "snowmap",
              {"INPUT": P.fromChildOutput("removeclouds", "OUTPUT"), "DEM": P.fromModelParameter("dem"),
               "METHOD": P.fromStaticValue(0)},
              (("OUTPUT", "Snow map"),))
        child("topoclear:snowstats", "snowstats",
              {"INPUT": P.fromChildOutput("snowmap", "OUTPUT"), "DEM": P.fromModelParameter("dem")},
              (("OUTPUT_TABLE", "Snow by elevation band"), ("OUTPUT_CSV", "Snow by elevation band CSV")))
        model.updateDestinationParameters()
        return model

    def model_folder(self) -> str:
        try:
            from processing.modeler.ModelerUtils import ModelerUtils

            folders = ModelerUtils.modelsFolders()
            if folders:
                return folders[0]
        except Exception:
            pass
        return os.path.join(QgsApplication.qgisSettingsDirPath(), "processing", "models")

    def run_model_variant(self, label: str, stack_into_removeclouds: bool) -> dict:
        import processing

        entry = {"chain": ("terrainstack -> removeclouds (stack as DEM) -> snowmap -> snowstats"
                           if stack_into_removeclouds else
                           "terrainstack (side output); DEM -> removeclouds -> snowmap -> snowstats"),
                 "runs": []}
        name = MODEL_NAME if stack_into_removeclouds else MODEL_NAME + "_dem"
        model = self.build_model(name, stack_into_removeclouds)
        valid = model.validate() if hasattr(model, "validate") else (True, [])
        entry["model_valid"] = [bool(valid[0]), list(valid[1])]
        folder = self.model_folder()
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.model3")
        entry["file"] = path
        entry["saved"] = bool(model.toFile(path))
        registry = QgsApplication.processingRegistry()
        model_provider = registry.providerById("model")
        if model_provider is not None:
            model_provider.refreshAlgorithms()
        self.pump(0.5)
        alg = registry.algorithmById(f"model:{name}")
        entry["in_toolbox"] = alg is not None
        if alg is None:
            entry["failures"] = [f"model:{name} not found in the toolbox after saving {path}"]
            return entry
        entry["model_parameters"] = [d.name() for d in alg.parameterDefinitions()]
        params = {"dem": self.layers.get("tm_dem"), "s2": self.layers.get("tm_s2"), "s1": self.layers.get("tm_s1")}
        dialog = processing.createAlgorithmDialog(f"model:{name}", params)
        dialog.show()
        self.pump(0.8)
        entry["screenshot_dialog"] = self.grab(dialog, f"model_{label}_dialog")
        for k in range(1, self.result["model_runs_expected"] + 1):
            record = self.run_in_dialog(dialog, "model", k, 900)
            rasters = [l for l in record["layers"] if l["kind"] == "raster"]
            failures = [] if record["ok"] else ["run failed: " + (record.get("error") or "no error text")]
            if record["ok"]:
                if not rasters:
                    failures.append("no raster layer added")
                for layer in rasters:
                    if not layer.get("styled"):
                        failures.append(f"model output layer {layer['name']!r} not styled "
                                        f"(renderer {layer.get('renderer')})")
            record["failures"] = failures
            record["passed"] = not failures
            record["screenshot"] = self.grab(dialog, f"model_{label}_run{k}")
            entry["runs"].append(record)
            self.save()
        dialog.close()
        dialog.deleteLater()
        entry["failures"] = [f"run {r['run']}: {f}" for r in entry["runs"] for f in r["failures"]]
        return entry

    def run_model(self) -> None:
        registry = QgsApplication.processingRegistry()
        removeclouds = registry.algorithmById("topoclear:removeclouds")
        names = [d.name() for d in removeclouds.parameterDefinitions()] if removeclouds else []
        terrain_inputs = [n for n in names if "TERRAIN" in n.upper() or "STACK" in n.upper()]
        self.result["model"]["removeclouds_terrain_stack_parameter"] = terrain_inputs
        self.result["model"]["removeclouds_parameters"] = names
        try:
            self.result["model"]["stack"] = self.run_model_variant("stack", True)
        except Exception:
            self.result["model"]["stack"] = {"driver_error": self.error("model (stack)"), "runs": [],
                                             "failures": ["driver error"]}
        self.save()
        if self.result["model"]["stack"].get("failures"):
            try:
                self.result["model"]["dem"] = self.run_model_variant("dem", False)
            except Exception:
                self.result["model"]["dem"] = {"driver_error": self.error("model (dem)")}
        self.toolbox_screenshot()
        self.save()

    def toolbox_screenshot(self) -> None:
        toolbox = iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
        if toolbox is None:
            return
        toolbox.show()
        toolbox.raise_()
        box = getattr(toolbox, "searchBox", None)
        if box is not None:
            box.setText("topoclear")
        self.pump(1.0)
        self.result["model"]["toolbox_screenshot"] = self.grab(toolbox, "processing_toolbox")
        if box is not None:
            box.setText("")

    # -- the session --------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            main = iface.mainWindow()
            main.setGeometry(0, 0, 1280, 800)
            self.pump(1.0)
            screen = QApplication.primaryScreen().size()
            self.result["screen"] = [screen.width(), screen.height()]
            self.result["main_window"] = [main.width(), main.height()]
            from qgis.core import Qgis

            self.result["qgis_version"] = Qgis.QGIS_VERSION
            self.result["plugin_loaded"] = "topoclear" in plugins
            self.result["provider_loaded"] = QgsApplication.processingRegistry().providerById("topoclear") is not None
            self.save()
            steps = [("load layers", self.load_layers), ("algorithms", self.run_algorithms),
                     ("docks", self.run_docks), ("cancel in the dock", self.cancel_dock_run),
                     ("cancel in the dialog", self.cancel_dialog_run), ("model", self.run_model)]
            if not self.result["provider_loaded"]:
                steps = steps[:1]
            for where, step in steps:
                try:
                    step()
                except Exception:
                    self.error(where)
                self.save()
            self.screen("end_of_session")
            self.result["finished"] = True
        except Exception:
            self.error("session")
        self.save()
        self.quit()

    def quit(self) -> None:
        self.watchdog.stop()
        self.deadline.stop()
        QgsProject.instance().setDirty(False)
        # a last resort if QGIS does not close by itself
        QTimer.singleShot(60000, lambda: os._exit(0))
        self.watchdog.start()
        iface.actionExit().trigger()


def _start_session() -> None:
    global TOPOCLEAR_GUI_SESSION
    config = json.load(open(os.environ["TOPOCLEAR_GUI_CONFIG"]))
    TOPOCLEAR_GUI_SESSION = Session(config)
    TOPOCLEAR_GUI_SESSION.start()


TOPOCLEAR_GUI_SESSION = None
QTimer.singleShot(2000, _start_session)
