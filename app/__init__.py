"""rollback-console: the engine (plain async Python) and the Textual App (app.tui)."""

# The one place the version is written: the build reads it from here ([tool.hatch.version] in
# pyproject.toml), so `--version` needs no importlib.metadata (40 ms of imports) at run time.
__version__ = "0.1.0"
