"""devstack.edge_config: settings become nginx directives only when they are what they claim, and its
directories are private: a symlink planted at one is refused, never followed."""

import os
import subprocess
import sys

import pytest

from harness import ROOT


def render(tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devstack.edge_config", "--prefix", str(tmp_path / "edge"),
                           "--cache-dir", str(tmp_path / "cache")], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_the_defaults_render_every_placeholder(tmp_path):
    # Empty means the default, whatever the environment (or .env) of the run says.
    run = render(tmp_path, HOST="", PORT="", APP_BIND="", METRICS_ALLOW="")
    assert run.returncode == 0, run.stderr
    conf = (tmp_path / "edge" / "nginx.conf").read_text()
    assert "${" not in conf
    assert "listen 0.0.0.0:8080" in conf and "server 127.0.0.1:8081;" in conf
    assert "allow 127.0.0.1/32;" in conf and "allow ::1/128;" in conf


@pytest.mark.parametrize("setting, value", [
    ("METRICS_ALLOW", "127.0.0.1; allow all"),
    ("METRICS_ALLOW", "everyone"),
    ("APP_BIND", "127.0.0.1:8081; }"),
    ("APP_BIND", "127.0.0.1:99999"),
    ("APP_BIND", "unix:relative/path"),
    ("HOST", "0.0.0.0:1 default_server; #"),
    ("EDGE_CACHE_MAX_MB", "0"),
    ("EDGE_CLIENT_TIMEOUT_S", "-1"),
])
def test_a_setting_that_would_inject_or_break_directives_is_refused(tmp_path, setting, value):
    run = render(tmp_path, **{setting: value})
    assert run.returncode != 0 and "edge_config:" in run.stderr
    assert not (tmp_path / "edge" / "nginx.conf").exists()


@pytest.mark.parametrize("planted", ["cache", "cache/orders", "cache/temp", "edge", "edge/logs", "edge/run"])
def test_a_symlink_planted_at_a_directory_of_the_edge_is_refused(tmp_path, planted):
    """Someone else's directory behind the link gets neither our files nor (as root) a chown."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    elsewhere.chmod(0o755)
    (tmp_path / planted).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / planted).symlink_to(elsewhere)
    run = render(tmp_path)
    assert run.returncode != 0
    assert f"{tmp_path / planted} is a symbolic link" in run.stderr and "Remove it" in run.stderr
    assert list(elsewhere.iterdir()) == []
    assert elsewhere.stat().st_uid == os.geteuid() and elsewhere.stat().st_mode & 0o777 == 0o755


def test_the_directories_are_private(tmp_path):
    run = render(tmp_path)
    assert run.returncode == 0, run.stderr
    for path in ("edge", "edge/logs", "edge/run", "cache/orders", "cache/temp"):
        assert (tmp_path / path).stat().st_mode & 0o077 == 0, path
    # The cache dir: the workers' group may pass through (as root), nobody else.
    assert (tmp_path / "cache").stat().st_mode & 0o027 == 0
