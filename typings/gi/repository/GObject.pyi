"""Stub: the GObject API the GIMP plug-in calls."""
from typing import Any

class ParamFlags(int):
    READWRITE: ParamFlags
    READABLE: ParamFlags
    WRITABLE: ParamFlags

TYPE_STRING: Any
TYPE_NONE: Any

class Value:
    def __init__(self, value_type: Any = ..., py_value: Any = ...) -> None: ...

class ParamSpec:
    name: str

class Object:
    def get_property(self, name: str) -> Any: ...
    def set_property(self, name: str, value: Any) -> None: ...
    def connect(self, signal: str, handler: Any, *args: Any) -> int: ...
