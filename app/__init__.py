"""rollback-console: the engine (plain async Python) and the Textual App (app.tui)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rollback-console")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0+checkout"
