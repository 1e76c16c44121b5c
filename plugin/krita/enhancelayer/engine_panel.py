"""The "Engine settings" dialog of the docker: This computer / Studio engine, the studio's URL,
token and certificate fingerprint (or a CA file), and "Test connection".

Fields, checks and the words of the test come from the shared core (``studio``), so GIMP's
panel says the same; the test runs off the GUI thread (a studio engine may be slow to answer).
"""
from __future__ import annotations

import threading
from typing import Any, Optional

from . import core
from .core import studio
from .qt import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTimer,
    QVBoxLayout,
    QWidget,
)


class EngineSettingsDialog(QDialog):
    def __init__(self, settings: Any, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("AI Enhance · Engine settings")
        self.setObjectName("enhancelayer_engine_settings")
        v = QVBoxLayout(self)
        form = QFormLayout()
        self.mode = QComboBox()
        self.mode.setObjectName("engine_mode")
        for key, title in studio.MODES:
            self.mode.addItem(title, key)
        self.mode.setCurrentIndex(max(0, self.mode.findData(settings.mode)))
        form.addRow("Engine", self.mode)
        self.fields: dict[str, QLineEdit] = {}
        for key, label, help_text in studio.FIELDS:
            edit = QLineEdit(getattr(settings, key))
            edit.setObjectName(f"engine_{key}")
            edit.setToolTip(help_text)
            edit.setPlaceholderText(help_text)
            if key == "token":
                edit.setEchoMode(QLineEdit.EchoMode.Password)
            self.fields[key] = edit
            form.addRow(label, edit)
        v.addLayout(form)
        self.test = QPushButton("Test connection")
        self.test.setObjectName("engine_test")
        self.test.clicked.connect(self.run_test)
        v.addWidget(self.test)
        self.answer = QLabel("")
        self.answer.setObjectName("engine_result")
        self.answer.setWordWrap(True)
        v.addWidget(self.answer)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._save)
        self.buttons.rejected.connect(self.reject)
        v.addWidget(self.buttons)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()
        self._outcome: Optional[tuple[bool, str, str]] = None
        self._poll = QTimer(self)
        self._poll.timeout.connect(self._check_test)

    def settings(self) -> Any:
        return studio.EngineSettings(self.mode.currentData(), *(self.fields[k].text().strip()
                                                                  for k, _l, _h in studio.FIELDS))

    def _mode_changed(self, *_args: Any) -> None:
        remote = self.mode.currentData() == studio.STUDIO
        for edit in self.fields.values():
            edit.setEnabled(remote)
        self.answer.setText("")

    def run_test(self) -> None:
        """Test these (unsaved) settings on a thread; the answer shows under the button."""
        s = self.settings()
        self.test.setEnabled(False)
        self.answer.setText("Testing…")
        self._outcome = None

        def work() -> None:
            self._outcome = studio.try_connection(s)

        threading.Thread(target=work, daemon=True).start()
        self._poll.start(100)

    def _check_test(self) -> None:
        if self._outcome is None:
            return
        self._poll.stop()
        ok, line, details = self._outcome
        self.answer.setText(line if ok or not details else f"{line}\n({details})")
        self.test.setEnabled(True)

    def _save(self) -> None:
        s = self.settings()
        bad = s.problems()
        if bad:
            self.answer.setText(" ".join(bad))
            return
        core.save_engine_settings(s)
        self.accept()
