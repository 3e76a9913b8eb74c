"""A real PostgreSQL 15 cluster (Debian's /usr/lib/postgresql/15/bin) archiving into a real
pgBackRest 2.45 repository, for the pgBackRest tests (not a fixture; tests import it). As root
the server runs as the sandbox's OS user, which owns the repository, the logs and the socket
folder pgBackRest's `backup` talks to the server through."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from app.sandbox.server import PgServer, as_user, chown_tree

PG15 = Path("/usr/lib/postgresql/15/bin")
ROOT = Path(__file__).resolve().parent.parent


def _missing() -> str:
    if shutil.which("pgbackrest") is None:
        return "pgbackrest"
    if not (PG15 / "postgres").exists() or not (PG15 / "pg_waldump").exists():
        return "PostgreSQL 15 server binaries"
    return ""


def require_pgbackrest() -> None:
    """Install pgBackRest and PostgreSQL 15 as `make test` does when missing; skip (saying
    why) only when that is impossible here."""
    if _missing() and os.geteuid() == 0:
        subprocess.run(["sh", str(ROOT / ".ci" / "install-pgbackrest.sh")], check=False,
                       capture_output=True)
    if _missing():
        pytest.skip(f"{_missing()} could not be installed on this machine "
                    "(sh .ci/install-pgbackrest.sh: apt-get install pgbackrest postgresql-15)")


def start_pgbackrest_cluster(root: Path, stanza: str,
                             retention_full: int | None = None) -> tuple[PgServer, Path, Path]:
    """initdb + start a PostgreSQL 15 cluster in ``root`` archiving into a pgBackRest
    repository: (the server, its pgbackrest.conf, the repository). No stanza yet."""
    server = PgServer.create(root / "pgdata", bins=PG15)
    sock, repo, logs = root / "sock", root / "repo", root / "log"
    for folder in (sock, repo, logs):
        folder.mkdir()
        chown_tree(folder, server.user)
    conf = root / "pgbackrest.conf"
    retention = f"repo1-retention-full={retention_full}\n" if retention_full else ""
    conf.write_text(f"[global]\nrepo1-path={repo}\n{retention}log-path={logs}\n"
                    f"lock-path={logs}\nlog-level-console=warn\nstart-fast=y\n\n"
                    f"[{stanza}]\npg1-path={server.data_dir}\npg1-socket-path={sock}\n"
                    f"pg1-port={server.port}\npg1-user={server.superuser}\n")
    conf.chmod(0o644)
    with (server.data_dir / "postgresql.conf").open("a") as pgconf:
        # pgBackRest's backup talks to the cluster over a unix socket (local trust auth)
        pgconf.write(f"unix_socket_directories = '{sock}'\nwal_level = replica\n"
                     f"archive_mode = on\narchive_command = 'pgbackrest --config={conf} "
                     f"--stanza={stanza} archive-push %p'\n")
    server.start()
    return server, conf, repo


def pgbackrest(server: PgServer, conf: Path, stanza: str, *args: str) -> str:
    """pgbackrest as the cluster's OS user (it owns the repository and the logs)."""
    proc = subprocess.run(  # type: ignore[call-overload]
        ["pgbackrest", f"--config={conf}", f"--stanza={stanza}", *args],
        capture_output=True, text=True, check=False, **as_user(server.user))
    assert proc.returncode == 0, f"pgbackrest {args}: {proc.stdout}\n{proc.stderr}"
    return str(proc.stdout)
