"""The Qt names the plug-in uses, from PyQt5 (Krita 5) or PyQt6 (Krita 6).

Only this module names a PyQt version; the rest of the plug-in imports from here and writes
enums scoped (``Qt.ItemDataRole.UserRole``), which both bindings accept (PyQt5 since 5.11),
so one source runs under both.
"""
from __future__ import annotations

try:
    from PyQt5 import QtCore, QtGui, QtWidgets
    from PyQt5.QtWidgets import QAction

    QT6 = False
except ImportError:  # Krita 6 (Qt 6)
    from PyQt6 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]
    from PyQt6.QtGui import QAction  # type: ignore[assignment]

    QT6 = True

Qt = QtCore.Qt
QCoreApplication = QtCore.QCoreApplication
QObject = QtCore.QObject
QThread = QtCore.QThread
QTimer = QtCore.QTimer
pyqtSignal = QtCore.pyqtSignal
QKeySequence = QtGui.QKeySequence
QStandardItem = QtGui.QStandardItem
QStandardItemModel = QtGui.QStandardItemModel
QCheckBox = QtWidgets.QCheckBox
QComboBox = QtWidgets.QComboBox
QDialog = QtWidgets.QDialog
QDialogButtonBox = QtWidgets.QDialogButtonBox
QDoubleSpinBox = QtWidgets.QDoubleSpinBox
QFormLayout = QtWidgets.QFormLayout
QHBoxLayout = QtWidgets.QHBoxLayout
QLabel = QtWidgets.QLabel
QLineEdit = QtWidgets.QLineEdit
QMessageBox = QtWidgets.QMessageBox
QProgressBar = QtWidgets.QProgressBar
QProgressDialog = QtWidgets.QProgressDialog
QPushButton = QtWidgets.QPushButton
QSlider = QtWidgets.QSlider
QSpinBox = QtWidgets.QSpinBox
QVBoxLayout = QtWidgets.QVBoxLayout
QWidget = QtWidgets.QWidget

__all__ = ["QT6", "QAction", "QCheckBox", "QComboBox", "QCoreApplication", "QDialog", "QDialogButtonBox",
           "QDoubleSpinBox", "QFormLayout", "QHBoxLayout", "QKeySequence", "QLabel", "QLineEdit", "QMessageBox",
           "QObject",
           "QProgressBar", "QProgressDialog", "QPushButton", "QSlider", "QSpinBox", "QStandardItem",
           "QStandardItemModel", "QThread", "QTimer", "QVBoxLayout", "QWidget", "Qt", "pyqtSignal"]
