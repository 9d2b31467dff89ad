"""config.py's DEFAULTS is the one place a default is written: what the service and gunicorn use
without configuration, and what .env.example, README's table and docker-compose.yml say, must all
agree with it (`make infra`'s devstack/ reads config.py itself). A failure names the file, the
variable and both values."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
# Set in docker-compose.yml to the containers' own addresses, on purpose.
COMPOSE_CONTAINER_ADDRESSES = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "AUTH_ISSUER"}
# Read without being settings: set by gunicorn.conf.py for prometheus-client; the XDG base
# directory that ORDER_SERVICE_HOME's default honours.
NOT_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR", "XDG_CACHE_HOME"}


def shown(value: str | int | bool) -> str:
    """A default as an environment variable would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def mismatches(source: str, found: dict[str, str], every_variable: bool = True) -> list[str]:
    problems = []
    if every_variable:
        problems += [f"{source} lacks {name} (default {shown(value)!r} in config.py)"
                     for name, value in DEFAULTS.items() if name not in found]
    for name, value in found.items():
        if name not in DEFAULTS:
            problems.append(f"{source} has {name}, which config.py's DEFAULTS lacks")
        elif value != shown(DEFAULTS[name]):
            problems.append(f"{source} gives {name}={value!r}, config.py's default is "
                            f"{shown(DEFAULTS[name])!r}")
    return problems


def test_env_example_lists_every_variable_with_its_default() -> None:
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        # "# NAME=value" counts too: some defaults can't be written literally in a dotenv file.
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match[1]] = match[2]
    problems = mismatches(".env.example", found)
    assert not problems, "\n".join(problems)


def readme_variables() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    found = {}
    for row in re.findall(r"^\| (`[A-Z].*?) \| (.*?) \|", section, flags=re.MULTILINE):
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", row[0])
        cells = [cell.strip() for cell in row[1].split(" / ")]
        assert len(names) == len(cells), f"README's row for {names} has {len(cells)} defaults"
        for name, cell in zip(names, cells, strict=True):
            found[name] = "" if cell == "(empty)" else cell.strip("`")
    return found


def test_readme_table_lists_every_variable_with_its_default() -> None:
    problems = mismatches("README.md (Configuration table)", readme_variables())
    assert not problems, "\n".join(problems)


def compose_app_environment() -> dict[str, str]:
    lines = (ROOT / "docker-compose.yml").read_text().split("x-app-environment:", 1)[1].splitlines()
    found = {}
    for line in lines[1:]:
        match = re.fullmatch(r"  ([A-Z][A-Z0-9_]*): (.*)", line)
        if not match:
            break
        found[match[1]] = match[2].strip('"')
    return found


def test_docker_compose_agrees_with_the_defaults() -> None:
    found = compose_app_environment()
    assert set(found) >= COMPOSE_CONTAINER_ADDRESSES, "docker-compose.yml's app lost its addresses"
    problems = mismatches("docker-compose.yml (x-app-environment)",
                          {k: v for k, v in found.items() if k not in COMPOSE_CONTAINER_ADDRESSES},
                          every_variable=False)
    compose = (ROOT / "docker-compose.yml").read_text()
    from app.ingest.dead_letters import MAX_DEAD_LETTER_BYTES, MAX_SOURCE_RECORD_BYTES

    topics = (f"for topic in {DEFAULTS['KAFKA_TOPIC']}:{MAX_SOURCE_RECORD_BYTES} "
              f"{DEFAULTS['KAFKA_DLQ_TOPIC']}:{MAX_DEAD_LETTER_BYTES};")
    partitions = f"--partitions {DEFAULTS['KAFKA_TOPIC_PARTITIONS']} "
    broker_partitions = f"KAFKA_NUM_PARTITIONS: {DEFAULTS['KAFKA_TOPIC_PARTITIONS']}\n"
    # The broker's record size limit: infra/kafka/server.properties is rendered from the same constant.
    broker_limit = f"KAFKA_MESSAGE_MAX_BYTES: {MAX_SOURCE_RECORD_BYTES}\n"
    problems += [f"docker-compose.yml lacks {expected!r}"
                 for expected in (topics, partitions, broker_partitions, broker_limit)
                 if expected not in compose]
    assert not problems, "\n".join(problems)


def test_config_and_gunicorn_read_no_variable_outside_defaults() -> None:
    """A setting read straight from os.environ must still be one of DEFAULTS, with the same default."""
    problems = []
    for file in ("config.py", "gunicorn.conf.py"):
        source = (ROOT / file).read_text()
        for name, default in re.findall(r"environ\.get\(\s*['\"](\w+)['\"](?:,\s*['\"]([^'\"]*)['\"])?",
                                        source):
            if name in NOT_SETTINGS:
                continue
            if name not in DEFAULTS:
                problems.append(f"{file} reads {name}, which config.py's DEFAULTS lacks")
            elif default and default != shown(DEFAULTS[name]):
                problems.append(f"{file} defaults {name} to {default!r}, config.py to "
                                f"{shown(DEFAULTS[name])!r}")
    assert not problems, "\n".join(problems)


PROBE = """
import json, runpy
from config import Config
gunicorn = runpy.run_path("gunicorn.conf.py")
print(json.dumps({
    "config": {name: getattr(Config, name) for name in dir(Config) if name.isupper()},
    "gunicorn": {name: gunicorn[name] for name in
                 ("workers", "worker_class", "threads", "timeout", "graceful_timeout", "accesslog")},
}, default=str))
"""


@pytest.fixture(scope="module")
def unconfigured(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Config and gunicorn.conf.py's settings in a process where no variable is set. Each is set
    empty (which means "the default"), so that a developer's .env can't fill it in; HOME is an empty
    directory, so that no secret `make infra` made for its provider fills one in either."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path_factory.mktemp("home")),
           **dict.fromkeys(DEFAULTS, "")}
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                           text=True, check=True)
    return json.loads(probe.stdout)


def test_config_uses_the_defaults(unconfigured: dict) -> None:
    config = unconfigured["config"]
    assert config["SQLALCHEMY_DATABASE_URI"] == DEFAULTS["DATABASE_URL"]
    assert config["DB_POOL_SIZE"] == DEFAULTS["DB_POOL_SIZE"]
    same_name = {name: config[name] for name in DEFAULTS if name in config}
    assert len(same_name) >= 10
    assert same_name == {name: DEFAULTS[name] for name in same_name}


def test_gunicorn_uses_the_defaults(unconfigured: dict) -> None:
    assert unconfigured["gunicorn"] == {
        "workers": DEFAULTS["WEB_CONCURRENCY"],
        "worker_class": DEFAULTS["GUNICORN_WORKER_CLASS"],
        "threads": DEFAULTS["GUNICORN_THREADS"],
        "timeout": DEFAULTS["GUNICORN_TIMEOUT"],
        "graceful_timeout": DEFAULTS["GUNICORN_GRACEFUL_TIMEOUT"],
        "accesslog": DEFAULTS["GUNICORN_ACCESS_LOG"] or None,
    }
