"""The bench's machine figures: what the disks wrote is counted."""

import os

from bench.cpu import disk_bytes


def test_a_file_written_through_to_disk_counts_among_the_disks_bytes_written(tmp_path):
    # tmp_path is on a disk here (not tmpfs); four mebibytes, forced out of the page cache by fsync.
    size = 4 * 2**20
    before_read, before_written = disk_bytes()
    path = tmp_path / "written"
    with path.open("wb") as file:
        file.write(os.urandom(size))
        file.flush()
        os.fsync(file.fileno())
    after_read, after_written = disk_bytes()
    assert after_written - before_written >= size
    assert after_read >= before_read
