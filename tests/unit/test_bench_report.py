"""Which runs of the benchmark put their table into README."""

from bench.report import README, RESULTS_DIR, readme_to_update


def test_a_full_run_into_the_results_directory_updates_readme():
    assert readme_to_update(RESULTS_DIR, smoke=False) == README


def test_a_run_written_elsewhere_leaves_readme_alone(tmp_path):
    # README would otherwise show that run's table alone, in place of the latest results.
    assert readme_to_update(tmp_path, smoke=False) is None


def test_a_smoke_run_leaves_readme_alone():
    assert readme_to_update(RESULTS_DIR, smoke=True) is None


def test_the_results_directory_named_another_way_is_still_the_results_directory():
    assert readme_to_update(RESULTS_DIR / ".." / "results", smoke=False) == README
