"""Where the benchmark's runs write, and which of them put their table into README."""

import tempfile

from bench.report import README, RESULTS_DIR, readme_to_update, results_dir
from bench.scale import settings_from_args


def test_a_full_run_into_the_results_directory_updates_readme():
    assert readme_to_update(RESULTS_DIR, smoke=False) == README


def test_a_run_written_elsewhere_leaves_readme_alone(tmp_path):
    # README would otherwise show that run's table alone, in place of the latest results.
    assert readme_to_update(tmp_path, smoke=False) is None


def test_a_smoke_run_leaves_readme_alone():
    assert readme_to_update(RESULTS_DIR, smoke=True) is None


def test_the_results_directory_named_another_way_is_still_the_results_directory():
    assert readme_to_update(RESULTS_DIR / ".." / "results", smoke=False) == README


def test_a_smoke_run_without_out_writes_to_a_new_temporary_directory(tmp_path, monkeypatch):
    # Its tiny figures must never replace the real ones in bench/results/latest.*.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first, second = results_dir(None, smoke=True), results_dir(None, smoke=True)
    assert first.is_dir() and first.parent == tmp_path
    assert second != first  # each smoke run a directory of its own


def test_a_full_run_without_out_writes_to_the_results_directory(tmp_path):
    assert results_dir(None, smoke=False) == RESULTS_DIR
    assert results_dir(tmp_path, smoke=True) == tmp_path


def test_the_scale_benchs_smoke_run_writes_outside_the_results_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _, out_dir = settings_from_args(["--smoke"])
    assert out_dir.parent == tmp_path
    assert settings_from_args([])[1] == RESULTS_DIR
