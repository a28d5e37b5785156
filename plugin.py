"""The QGIS plugin object: the Processing provider and, in the desktop app, the docks, menus and toolbar."""
from __future__ import annotations

import os
from typing import List, Optional

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QLocale, QSettings, QTranslator, QUrl

from .processing_provider.provider import TopoClearProvider
from .qgis_common.i18n import tr

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
MENU = "&TopoClear"
DOCS = os.path.join(PLUGIN_DIR, "docs", "index.html")


def icon_path(name: str) -> str:
    return os.path.join(PLUGIN_DIR, "ui", "icons", f"{name}.svg")


class TopoClearPlugin:
    """Created by ``classFactory``. ``iface`` is None under ``qgis_process``: only GUI code touches it."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.docks: List = []
        self.actions: List = []
        self.toolbar = None
        self._translator: Optional[QTranslator] = None
        self._dependencies_dialog = None
        self._install_translation()
        self._activate_packages()

    # -- start-up -------------------------------------------------------------------------------
    def _install_translation(self) -> None:
        """Load ``i18n/topoclear_<locale>.qm`` when QGIS runs in a language TopoClear is translated to."""
        locale = str(QSettings().value("locale/userLocale", QLocale.system().name()) or "")[:2]
        path = os.path.join(PLUGIN_DIR, "i18n", f"topoclear_{locale}.qm")
        if locale and os.path.isfile(path):
            self._translator = QTranslator()
            if self._translator.load(path):
                QCoreApplication.installTranslator(self._translator)

    @staticmethod
    def _activate_packages() -> None:
        """Put the packages folder the plugin installs dependencies into on ``sys.path``."""
        try:
            from .ui.dependencies_dialog import activate_profile_packages

            activate_profile_packages()
        except Exception:  # a broken profile folder must never stop QGIS from loading the plugin
            pass

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        if self.provider is None:
            self.provider = TopoClearProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # -- desktop ----------------------------------------------------------------------------------
    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()
        if self.iface is None:
            return
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .ui.docks import create_docks

        self.docks = create_docks(self.iface)
        main = self.iface.mainWindow()
        self.toolbar = self.iface.addToolBar(tr("TopoClear"))
        self.toolbar.setObjectName("TopoClearToolbar")
        for dock, icon in zip(self.docks, ("snow", "clouds")):
            action = dock.toggleViewAction()
            action.setIcon(QIcon(icon_path(icon)))
            action.setToolTip(tr("Show or hide the {} panel").format(dock.windowTitle()))
            self.toolbar.addAction(action)
            self._add_to_menus(action)
        for text, icon, slot, tip in (
                (tr("Install dependencies..."), "topoclear", self.show_dependencies,
                 tr("Install PyTorch, the cloud detector and the batch packages into the plugin's own folder")),
                (tr("TopoClear help"), "topoclear", self.show_help, tr("Open the TopoClear documentation"))):
            action = QAction(QIcon(icon_path(icon)), text, main)
            action.setToolTip(tip)
            action.triggered.connect(slot)
            self.actions.append(action)
            self._add_to_menus(action)
        help_menu = getattr(self.iface, "pluginHelpMenu", None)
        if help_menu is not None:
            help_menu().addAction(self.actions[-1])

    def _add_to_menus(self, action) -> None:
        self.iface.addPluginToMenu(MENU, action)
        add_raster = getattr(self.iface, "addPluginToRasterMenu", None)
        if add_raster is not None:
            add_raster(MENU, action)

    def show_dependencies(self) -> None:
        from .ui.dependencies_dialog import DependenciesDialog

        if self._dependencies_dialog is None:
            self._dependencies_dialog = DependenciesDialog(self.iface.mainWindow())
        self._dependencies_dialog.refresh()
        self._dependencies_dialog.show()
        self._dependencies_dialog.raise_()

    @staticmethod
    def show_help() -> None:
        from qgis.PyQt.QtGui import QDesktopServices

        QDesktopServices.openUrl(QUrl.fromLocalFile(DOCS))

    def unload(self):
        if self.iface is not None:
            remove = getattr(self.iface, "removePluginMenu", None)
            remove_raster = getattr(self.iface, "removePluginRasterMenu", None)
            help_menu = getattr(self.iface, "pluginHelpMenu", None)
            menu_actions = [d.toggleViewAction() for d in self.docks] + self.actions
            for action in menu_actions:
                if remove is not None:
                    remove(MENU, action)
                if remove_raster is not None:
                    remove_raster(MENU, action)
            if help_menu is not None and self.actions:
                help_menu().removeAction(self.actions[-1])
            for action in self.actions:
                action.deleteLater()
            self.actions = []
            if self.toolbar is not None:
                self.toolbar.deleteLater()
                self.toolbar = None
            if self._dependencies_dialog is not None:
                self._dependencies_dialog.deleteLater()
                self._dependencies_dialog = None
        for dock in self.docks:
            self.iface.mainWindow().removeDockWidget(dock)
            dock.deleteLater()
        self.docks = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self._translator is not None:
            QCoreApplication.removeTranslator(self._translator)
            self._translator = None
