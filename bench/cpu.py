"""CPU time of the processes that ingest takes, read from /proc: the service's workers, PostgreSQL
(every process of the cluster) and the Kafka broker, and the whole machine's for comparison (other
people's work on a shared machine shows up there, not in the three groups). The cluster and the
broker are shared too (other people's tests use them): PostgreSQL's backends serving the bench's
own database are counted apart as well, as the figure no one else's work is in."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")
GROUPS = ("service", "postgres", "kafka")


def process_us(pid: int, reaped_children: bool = False) -> float:
    """utime + stime of `pid` (all its threads), plus what its exited children used if asked; 0 for a
    process that has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + (cutime + cstime if reaped_children else 0)) * TICK_US


def children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    found = []
    for task in tasks:
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def tree_us(pid: int) -> float:
    """A process with its live children and every child it has reaped (PostgreSQL's postmaster:
    backends that connected and left during the window are counted too)."""
    return process_us(pid, reaped_children=True) + sum(process_us(child) for child in children(pid))


def backends_us(postmaster: int, database: str) -> float:
    """The backends connected to `database`: PostgreSQL names each process after its user, database
    and client ("postgres: orders orders_bench_x 127.0.0.1(5123) idle")."""
    total = 0.0
    for child in children(postmaster):
        try:
            title = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if len(title.split()) > 2 and title.split()[2] == database:
            total += process_us(child)
    return total


def machine_us() -> tuple[float, float, float]:
    """(busy, total, waiting for I/O) CPU time of every core since boot, from the first line of
    /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - idle) * TICK_US, total * TICK_US, values[4] * TICK_US


def whole_disks(sys_block: Path = Path("/sys/block")) -> frozenset[str]:
    """The machine's disks: whole disks only (a partition's bytes are in its disk's), no virtual
    devices (loop, ram, device mapper)."""
    return frozenset(entry.name for entry in sys_block.iterdir() if (entry / "device").exists())


def disk_bytes(disks: frozenset[str], diskstats: Path = Path("/proc/diskstats")) -> tuple[int, int]:
    """(read, written) bytes of `disks` since boot, from /proc/diskstats."""
    read = written = 0
    for line in diskstats.read_text().splitlines():
        fields = line.split()
        if fields[2] in disks:
            read, written = read + int(fields[5]) * 512, written + int(fields[9]) * 512  # 512-byte sectors
    return read, written


def listening_pid(port: int) -> int | None:
    """The process that listens on TCP `port` (PostgreSQL's postmaster, the Kafka broker)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


@dataclass
class Snapshot:
    groups: dict[str, float]
    machine_busy_us: float
    machine_total_us: float
    machine_iowait_us: float
    disk_read_bytes: int
    disk_written_bytes: int


class CpuMeter:
    """Snapshots of the groups' CPU time; `between` gives what each used from one to another."""

    def __init__(self, service_pids: Callable[[], list[int]], postgres_port: int, kafka_port: int,
                 database: str) -> None:
        self.service_pids = service_pids
        self.database = database
        self.postmaster = listening_pid(postgres_port)
        self.broker = listening_pid(kafka_port)
        self.disks = whole_disks()

    def snapshot(self) -> Snapshot:
        groups = {
            "service": sum(process_us(pid) for pid in self.service_pids()),
            "postgres": tree_us(self.postmaster) if self.postmaster else 0.0,
            "kafka": tree_us(self.broker) if self.broker else 0.0,
            "postgres_bench_db": backends_us(self.postmaster, self.database) if self.postmaster else 0.0,
        }
        return Snapshot(groups, *machine_us(), *disk_bytes(self.disks))

    @staticmethod
    def between(first: Snapshot, last: Snapshot, orders: int) -> dict:
        """µs per order of each group and of the three together, and the machine's own figures over
        the same window: its busy CPU per order, how busy it was (1.0 = every core all the time), how
        long its cores waited for the disks (the same scale) and what the disks read and wrote."""
        per_order = {name: round((last.groups[name] - first.groups[name]) / orders, 1) for name in GROUPS}
        per_order["total"] = round(sum(per_order[name] for name in GROUPS), 1)
        # Processes, not a group of its own: part of "postgres", without other people's sessions.
        per_order["postgres_bench_db"] = round(
            (last.groups["postgres_bench_db"] - first.groups["postgres_bench_db"]) / orders, 1)
        busy = last.machine_busy_us - first.machine_busy_us
        window = last.machine_total_us - first.machine_total_us
        disk_read, disk_written = (last.disk_read_bytes - first.disk_read_bytes,
                                   last.disk_written_bytes - first.disk_written_bytes)
        return {
            "cpu_us_per_order": per_order,
            "machine": {
                "busy_us_per_order": round(busy / orders, 1),
                "others_us_per_order": round(busy / orders - per_order["total"], 1),
                "busy_share": round(busy / window, 3) if window else 0.0,
                # The kernel's iowait count can step back (Documentation/filesystems/proc.rst).
                "iowait_share": round(max(0.0, last.machine_iowait_us - first.machine_iowait_us) / window, 3)
                if window else 0.0,
                "disk_read_bytes_per_order": round(disk_read / orders),
                "disk_written_bytes_per_order": round(disk_written / orders),
            },
        }
