"""The bench's machine figures: the disks' bytes and the cores' waiting, per order."""

import os

from bench.cpu import CpuMeter, Snapshot, disk_bytes, whole_disks

# /proc/diskstats lines: major minor name, then reads completed, merged, sectors read, ms reading,
# writes completed, merged, sectors written, ...
DISKSTATS = """\
 253       0 vda 100 0 2000 50 300 0 8000 90 0 120 140 0 0 0 0 0 0
 253       1 vda1 90 0 1800 40 290 0 7000 80 0 110 120 0 0 0 0 0 0
   7       0 loop0 5 0 400 1 0 0 0 0 0 1 1 0 0 0 0 0 0
 252       0 dm-0 7 0 600 1 6 0 500 1 0 1 1 0 0 0 0 0 0
"""


def _sys_block(root, disks, virtual):
    for name in disks:
        (root / name / "device").mkdir(parents=True)
    for name in virtual:
        (root / name).mkdir(parents=True)
    return root


def test_only_whole_disks_count_and_a_sector_is_512_bytes(tmp_path):
    diskstats = tmp_path / "diskstats"
    diskstats.write_text(DISKSTATS)
    sys_block = _sys_block(tmp_path / "block", disks=["vda"], virtual=["loop0", "dm-0"])
    # vda1 is a partition (its bytes are vda's already), loop0 and dm-0 are not disks.
    assert disk_bytes(whole_disks(sys_block), diskstats) == (2000 * 512, 8000 * 512)


def test_a_file_written_through_to_disk_counts_among_the_disks_bytes_written(tmp_path):
    # tmp_path is on a disk here (not tmpfs); four mebibytes, forced out of the page cache by fsync.
    size = 4 * 2**20
    disks = whole_disks()
    _, before = disk_bytes(disks)
    with (tmp_path / "written").open("wb") as file:
        file.write(os.urandom(size))
        file.flush()
        os.fsync(file.fileno())
    _, after = disk_bytes(disks)
    assert after - before >= size


def _snapshot(busy_s, total_s, iowait_s, read, written):
    groups = {"service": 0.0, "postgres": 0.0, "kafka": 0.0, "postgres_bench_db": 0.0}
    return Snapshot(groups, busy_s * 1e6, total_s * 1e6, iowait_s * 1e6, read, written)


def test_the_machine_figures_of_a_window_per_order():
    first = _snapshot(busy_s=10, total_s=100, iowait_s=1, read=1_000, written=5_000)
    # 4 s of both cores' time: 3 s busy, 1 s waiting for the disks; 2,000 orders.
    last = _snapshot(busy_s=13, total_s=104, iowait_s=2, read=201_000, written=4_005_000)
    machine = CpuMeter.between(first, last, orders=2000)["machine"]
    assert machine["busy_share"] == 0.75
    assert machine["iowait_share"] == 0.25
    assert machine["disk_read_bytes_per_order"] == 100
    assert machine["disk_written_bytes_per_order"] == 2000


def test_an_iowait_count_that_stepped_back_reads_as_no_waiting():
    first = _snapshot(busy_s=10, total_s=100, iowait_s=5, read=0, written=0)
    last = _snapshot(busy_s=11, total_s=102, iowait_s=4, read=0, written=0)
    assert CpuMeter.between(first, last, orders=10)["machine"]["iowait_share"] == 0.0
