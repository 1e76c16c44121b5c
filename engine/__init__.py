"""EnhanceLayer engine: local AI photo enhancement shared by the Krita and GIMP plug-ins."""

__version__ = "0.1.0"
