"""Redline's language server: suggestions, capture of their fate, and the model runtime.

`server` never imports `training`; the trainer runs as a separate process.
"""

__version__ = "0.1.0"
