"""scripts/render_nginx.py: settings become nginx directives only when they are what they claim."""

import os
import subprocess
import sys

import pytest

from harness import ROOT

RENDER = ROOT / "scripts" / "render_nginx.py"


def render(tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RENDER), "--prefix", str(tmp_path / "edge"), "--cache-dir",
                           str(tmp_path / "cache")], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)


def test_the_defaults_render_every_placeholder(tmp_path):
    # Empty means the default, and the environment wins over a developer's .env.
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
    assert run.returncode != 0 and "render_nginx:" in run.stderr
    assert not (tmp_path / "edge" / "nginx.conf").exists()
