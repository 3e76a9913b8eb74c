"""The config is validated before any screen opens: each kind of bad config gets its own message
naming the file and the key, and the CLI exits with code 2 having changed nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app import config
from app.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ENV = {"ROLLBACK_DB_PASSWORD": "pw-from-env", "ROLLBACK_APP_TOKEN": "tok-from-env",
               "ROLLBACK_TEST_USER_PASSWORD": "x", "ROLLBACK_SLACK_WEBHOOK": "https://hooks/x",
               "ROLLBACK_STATUS_TOKEN": "status-token"}

MINIMAL = """
[target]
name = "shop"
environment = "staging"
dsn = "postgresql://app@127.0.0.1:5432/shop"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rollback.toml"
    path.write_text(text)
    return path


def test_the_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    cfg = config.load(ROOT / "rollback.example.toml")
    assert cfg.target.name == "shop-production"
    assert cfg.target.environment == "production"
    assert cfg.target.dsn.reveal().startswith("postgresql://postgres:pw-from-env@")
    assert "pw-from-env" not in repr(cfg)
    assert cfg.app is not None and cfg.app.token is not None
    assert cfg.app.token.reveal() == "tok-from-env"
    assert [c.role for c in cfg.contacts][:2] == ["Primary DBA", "Application Lead"]
    assert cfg.channels["slack"] == "#incident-response"
    assert cfg.target.backups_root == (ROOT / "backups")


def test_minimal_config_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, MINIMAL))
    assert cfg.app is None and cfg.auth is None and cfg.contacts == ()
    assert cfg.target.database == "shop"


@pytest.mark.parametrize(("text", "expected"), [
    (MINIMAL.replace('name = "shop"\n', ""), "target.name is missing: a string is required"),
    (MINIMAL.replace('environment = "staging"', "environment = 3"),
     "target.environment: expected a string, got int (3)"),
    (MINIMAL.replace('environment = "staging"', 'environment = "prod"'),
     "target.environment: expected one of production, staging, drill, got 'prod'"),
    (MINIMAL + 'colour = "red"\n', "target.colour: unknown key"),
    (MINIMAL + "[sandbox]\nx = 1\n", "(top level).sandbox: unknown key"),
    (MINIMAL.replace('dsn = "postgresql://app@127.0.0.1:5432/shop"',
                     'dsn_env = "ROLLBACK_TEST_UNSET_VARIABLE"'),
     "target.dsn_env: environment variable ROLLBACK_TEST_UNSET_VARIABLE is not set"),
    (MINIMAL.replace("postgresql://", "mysql://"), "target.dsn: expected a postgresql:// URL"),
    (MINIMAL + '[app]\nbase_url = "ftp://x"\n', "app.base_url: expected an http:// or https://"),
    (MINIMAL + "[[contacts.people]]\nrole = \"DBA\"\n", "contacts.people[0].name is missing"),
    (MINIMAL + 'password_file = "nope.txt"\n', "target.password_file: cannot read"),
    ("[target\n", "not valid TOML"),
    (MINIMAL + '[pitr]\nengine = "walg"\n',
     "pitr.engine: expected one of native, pgbackrest, got 'walg'"),
    (MINIMAL + '[pitr]\nengine = "native"\nbase_dir = "."\n',
     "pitr.archive_dir is missing: a string is required"),
    (MINIMAL + '[pitr]\nengine = "native"\narchive_dir = "no-such-archive"\nbase_dir = "."\n',
     "pitr.archive_dir: "),
    (MINIMAL + '[pitr]\nengine = "pgbackrest"\n', "pitr.stanza is missing"),
    (MINIMAL + '[pitr]\nengine = "pgbackrest"\nstanza = "main"\nbin_dir = "."\n',
     "pitr.bin_dir: "),
    (MINIMAL + '[pitr]\nengine = "native"\narchive_dir = "."\nbase_dir = "."\nkeep = 1\n',
     "pitr.keep: unknown key"),
])
def test_each_bad_config_has_its_own_message(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message


def test_pitr_section_loads(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    (tmp_path / "base").mkdir()
    cfg = config.load(write(tmp_path, MINIMAL + '[pitr]\nengine = "native"\n'
                            'archive_dir = "archive"\nbase_dir = "base"\nkeep_aside = true\n'))
    assert cfg.pitr is not None and cfg.pitr.engine == "native"
    assert cfg.pitr.archive_dir == tmp_path / "archive" and cfg.pitr.keep_aside is True
    assert config.load(write(tmp_path, MINIMAL)).pitr is None


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('name = "shop"\n', "") + "extra = 1\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert len(info.value.problems) == 2


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("text", "expected"), [
    (MINIMAL + "bogus = true\n", "target.bogus: unknown key"),
    (MINIMAL.replace('environment = "staging"', "environment = 1"), "expected a string"),
    (MINIMAL.replace('name = "shop"\n', ""), "target.name is missing"),
    (MINIMAL.replace('dsn = "postgresql://app@127.0.0.1:5432/shop"', 'dsn_env = "NOPE_UNSET"'),
     "environment variable NOPE_UNSET is not set"),
])
def test_cli_prints_the_problem_and_exits_2(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    result = _cli("-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_config_says_how_to_get_one(tmp_path: Path) -> None:
    result = _cli(cwd=tmp_path)  # default ./rollback.toml does not exist
    assert result.returncode == 2
    assert "rollback.toml" in result.stderr and "sandbox up" in result.stderr
