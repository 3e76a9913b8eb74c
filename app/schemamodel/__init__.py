"""A database's schema as plain data (``model``), read from a live database's catalogs
(``read``) or from the JSON document a backup set keeps (``document``). The schema diff takes
two of these models; this package sits below the backup sets, which keep one."""

from __future__ import annotations

from app.schemamodel.document import from_json, to_json
from app.schemamodel.model import SchemaModel
from app.schemamodel.read import read

__all__ = ["SchemaModel", "from_json", "read", "to_json"]
