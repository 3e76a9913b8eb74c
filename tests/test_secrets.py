"""A DSN password or token in the config never reaches the screen, the log file, error messages
or reprs (Textual's crash screen prints locals)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from app import config, logs
from app.secrets import Secret, display_dsn, scrub
from app.tui import RollbackConsoleApp
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE


def _config_with_literal_password(tmp_path: Path, db: DemoDb, app_url: str, token: str) -> Path:
    path = tmp_path / "literal.toml"
    path.write_text(f"""
[target]
name = "literal-secrets"
environment = "staging"
dsn = "{db.server.dsn(db.name)}"
[app]
base_url = "{app_url}"
token = "{token}"
""")
    return path


async def test_password_never_on_screen_or_in_the_log(tmp_path: Path, demo_db: DemoDb,
                                                      demo_app: DemoApp) -> None:
    password = demo_db.server.password
    path = _config_with_literal_password(tmp_path, demo_db, demo_app.url, demo_app.admin_token)
    log_path = logs.configure(tmp_path / "run.jsonl")
    cfg = config.load(path)
    log = logs.get("test")
    log.info("connecting", dsn=cfg.target.dsn.reveal(), token=cfg.app.token if cfg.app else None)
    log.info("raw text " + cfg.target.dsn.reveal())
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.export_screenshot()
        assert "literal-secrets" in screen
        assert "***" in screen  # the DSN is shown, masked
        assert password not in screen and demo_app.admin_token not in screen
    text = log_path.read_text()
    assert "connecting" in text and "raw text" in text
    assert password not in text and demo_app.admin_token not in text


def test_secret_repr_and_dsn_display_are_masked() -> None:
    secret = Secret("hunter2-very-secret")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "hunter2" not in repr({"dsn": secret})
    shown = display_dsn("postgresql://app:p%40ss-w0rd@db.example:5432/shop")
    assert shown == "postgresql://app:***@db.example:5432/shop"
    assert scrub("failed postgres://u:pw1234@h/db") == "failed postgres://u:***@h/db"


def test_wrong_password_error_names_the_problem_not_the_password(tmp_path: Path,
                                                                 demo_db: DemoDb) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(f"""
[target]
name = "wrong-password"
environment = "staging"
dsn = "{demo_db.server.dsn(demo_db.name, password='Wr0ngPassw0rd')}"
""")
    import asyncio

    from app.probe import server_facts

    try:
        asyncio.run(server_facts(config.load(path).target))
    except Exception as exc:
        message = str(exc)
    else:
        raise AssertionError("a wrong password was accepted")
    assert "refused the password" in message
    assert "Wr0ngPassw0rd" not in message
    assert "***" in message


def test_cli_error_output_has_no_password(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[target]\nname = "x"\nenvironment = "staging"\n'
                    'dsn = "postgresql://u:TopSecret99@127.0.0.1:5432/db"\nbogus = 1\n')
    result = subprocess.run([*CONSOLE, "-c", str(path)], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "TopSecret99" not in result.stderr + result.stdout
