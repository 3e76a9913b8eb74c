"""The order a schema plan runs in, by name. Changes are sorted by phase (stable: statements
keep their order within one), so what must go is dropped first, in reverse dependency order;
then the structure is brought back; then what hangs on it is recreated; and last what no
longer exists in the backup is dropped. The values only order the phases."""

from __future__ import annotations

from enum import IntEnum


class Phase(IntEnum):
    # 1. what must go, dependents first
    DROP_POLICIES = 10
    DROP_TRIGGERS = 11
    DROP_VIEWS = 12
    DROP_FOREIGN_KEYS = 13
    DROP_CONSTRAINTS = 14
    DROP_INDEXES = 15
    # 2. the containers and what tables use
    CREATE_SCHEMAS = 20
    EXTENSIONS = 21
    TYPES = 22              # create, add enum values, recreate an enum beside the old one
    CREATE_SEQUENCES = 23
    FUNCTIONS = 24          # create, replace, recreate
    # 3. tables and columns
    RENAME_TABLES = 30
    DROP_TABLES = 31
    CREATE_TABLES = 32
    RENAME_COLUMNS = 33
    DROP_COLUMNS = 34
    ADD_COLUMNS = 35        # and generated columns recreated
    ALTER_COLUMNS = 36      # type, default, identity, NOT NULL, inheritance, persistence
    ALTER_SEQUENCES = 37
    # 4. what hangs on tables
    ADD_CONSTRAINTS = 40
    ADD_FOREIGN_KEYS = 41   # and VALIDATE of what is NOT VALID now
    CREATE_INDEXES = 42
    CREATE_VIEWS = 50
    MATVIEW_INDEXES = 51
    CREATE_TRIGGERS = 52
    ROW_SECURITY = 53
    CREATE_POLICIES = 54
    COMMENTS = 55
    OWNERS = 56
    GRANTS = 57
    # 5. what the backup does not have, once nothing uses it
    DROP_FUNCTIONS = 60
    DROP_SEQUENCES = 61
    DROP_TYPES = 62
    DROP_EXTENSIONS = 63
    DROP_SCHEMAS = 64
