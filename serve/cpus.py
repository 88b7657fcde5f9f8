"""How many CPUs this process may really use: the ones it may run on
(os.sched_getaffinity), capped by its cgroup's CPU quota (cgroup v2 `cpu.max`, cgroup v1
`cpu.cfs_quota_us` / `cpu.cfs_period_us`), in its own cgroup and every one above it.

os.cpu_count() ignores both: a container limited to 2 CPUs on a 64-core host would start
64 workers, each with onnxruntime threads for 64 cores. A fractional quota is rounded up
(1.5 CPUs is 2, as Kubernetes' downward API rounds `limits.cpu`); never less than 1.

    available_cpus()                            # this process
    available_cpus(Path("/fake"), affinity=8)   # cgroup files read under another root (tests)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Mount:
    root: str  # the folder of the cgroup filesystem that is mounted
    point: str  # where it is mounted
    version: int  # 1 or 2
    controllers: frozenset[str]  # cgroup v1: the controllers of this hierarchy (cpu, cpuacct, ...)


def available_cpus(root: Path = Path("/"), affinity: int | None = None) -> int:
    """The CPUs this process may use: its affinity (os.sched_getaffinity, unless given),
    capped by the tightest CPU quota of its cgroups."""
    cpus = len(os.sched_getaffinity(0)) if affinity is None else affinity
    quota = cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota - 1e-9))
    return max(1, cpus)


def cpu_quota(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota (in CPUs) over this process's cgroups, v2 and v1, and their
    ancestors; None when there is none (or no cgroup filesystem to read)."""
    try:
        memberships = _memberships(root / "proc/self/cgroup")
        mounts = _mounts(root / "proc/self/mountinfo")
    except OSError:
        return None
    quotas = []
    for mount in mounts:
        if mount.version == 2:
            path = memberships.get(("", 2))
            read = _v2_quota
        elif "cpu" in mount.controllers:
            path = next((p for (names, v), p in memberships.items() if v == 1 and "cpu" in names.split(",")), None)
            read = _v1_quota
        else:
            continue
        if path is None:
            continue
        for folder in _folders_up(root, mount, path):
            quota = read(folder)
            if quota is not None:
                quotas.append(quota)
    return min(quotas) if quotas else None


def _memberships(cgroup_file: Path) -> dict[tuple[str, int], str]:
    """/proc/self/cgroup: (controllers, version) -> the cgroup's path. v2 is the line '0::PATH'."""
    out = {}
    for line in cgroup_file.read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if number == "0" and controllers == "":
            out[("", 2)] = path
        else:
            out[(controllers, 1)] = path
    return out


def _mounts(mountinfo: Path) -> list[Mount]:
    """The cgroup filesystems in /proc/self/mountinfo (fields: id parent dev root point opts ... - type source superopts)."""
    mounts = []
    for line in mountinfo.read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or not tail:
            continue
        fs_type = tail[0]
        if fs_type == "cgroup2":
            mounts.append(Mount(fields[3], fields[4], 2, frozenset()))
        elif fs_type == "cgroup" and len(tail) >= 3:
            mounts.append(Mount(fields[3], fields[4], 1, frozenset(tail[2].split(","))))
    return mounts


def _folders_up(root: Path, mount: Mount, cgroup_path: str) -> list[Path]:
    """The cgroup's folder in the mount and each one above it, up to the mount's top.
    A path outside what the mount shows (another namespace's) reads from the mount's top."""
    path, top = PurePosixPath(cgroup_path), PurePosixPath(mount.root)
    try:
        relative = path.relative_to(top)
    except ValueError:
        relative = PurePosixPath()
    base = root / mount.point.lstrip("/")
    folders = [base / relative]
    for parent in relative.parents:
        folders.append(base / parent)
    return list(dict.fromkeys(folders))


def _v2_quota(folder: Path) -> float | None:
    """cpu.max: 'QUOTA PERIOD' in microseconds, or 'max PERIOD' for none."""
    try:
        quota, *period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period[0] if period else 100_000)


def _v1_quota(folder: Path) -> float | None:
    """cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def default_ort_threads(workers: int, cpus: int) -> int:
    """onnxruntime intra-op threads per model when --ort-threads is left out: with several
    workers, their share of the CPUs (workers x threads never exceeds them)."""
    return max(1, cpus // workers)
