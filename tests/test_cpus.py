"""The CPU count `--workers auto` starts: the affinity, capped by the cgroup's quota, read
from fake /proc and /sys/fs/cgroup trees laid out as the kernel lays them out."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from serve.cpus import available_cpus, cpu_quota

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTS = ("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
             "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
             "33 31 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")


def fake_root(tmp_path: Path, cgroup: str, mountinfo: str, files: dict[str, str]) -> Path:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    (tmp_path / "proc/self/mountinfo").write_text(mountinfo)
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return tmp_path


def test_cgroup_v2_container_of_two_cpus_on_a_64_core_host(tmp_path):
    """A container's own cgroup namespace: its cgroup is '/', cpu.max at the mount's top."""
    root = fake_root(tmp_path, "0::/\n", V2_MOUNT, {"/sys/fs/cgroup/cpu.max": "200000 100000\n"})
    assert cpu_quota(root) == 2.0
    assert available_cpus(root, affinity=64) == 2


def test_cgroup_v2_fraction_rounds_up_and_a_parent_quota_counts(tmp_path):
    """The tightest quota on the way up wins; 1.5 CPUs is 2 workers, 0.25 is 1, never 0."""
    cgroup = "0::/kubepods.slice/pod1.slice/cri-abc.scope\n"
    files = {"/sys/fs/cgroup/kubepods.slice/pod1.slice/cri-abc.scope/cpu.max": "max 100000\n",
             "/sys/fs/cgroup/kubepods.slice/pod1.slice/cpu.max": "150000 100000\n",
             "/sys/fs/cgroup/kubepods.slice/cpu.max": "max 100000\n"}
    root = fake_root(tmp_path, cgroup, V2_MOUNT, files)
    assert cpu_quota(root) == 1.5
    assert available_cpus(root, affinity=16) == 2
    (root / "sys/fs/cgroup/kubepods.slice/pod1.slice/cpu.max").write_text("25000 100000\n")
    assert available_cpus(root, affinity=16) == 1


def test_no_quota_is_the_affinity(tmp_path):
    root = fake_root(tmp_path, "0::/user.slice\n", V2_MOUNT, {"/sys/fs/cgroup/user.slice/cpu.max": "max 100000\n"})
    assert cpu_quota(root) is None
    assert available_cpus(root, affinity=3) == 3


def test_affinity_below_the_quota_wins(tmp_path):
    """taskset -c 0 inside a 4-CPU container: 1."""
    root = fake_root(tmp_path, "0::/\n", V2_MOUNT, {"/sys/fs/cgroup/cpu.max": "400000 100000\n"})
    assert available_cpus(root, affinity=1) == 1


def test_cgroup_v1_cfs_quota(tmp_path):
    """Docker on a cgroup v1 host: --cpus 3 is cfs_quota_us 300000 over a 100000 period;
    -1 is no quota."""
    cgroup = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    files = {"/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
             "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
             "/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us": "-1\n",
             "/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us": "100000\n"}
    root = fake_root(tmp_path, cgroup, V1_MOUNTS, files)
    assert cpu_quota(root) == 3.0
    assert available_cpus(root, affinity=64) == 3
    (root / "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us").write_text("-1\n")
    assert available_cpus(root, affinity=64) == 64


def test_cgroup_v1_mount_of_the_containers_own_folder(tmp_path):
    """Without a cgroup namespace, the container sees its hierarchy mounted from its own
    folder (mountinfo's root /docker/abc): its files are at the mount point itself."""
    cgroup = "4:cpu,cpuacct:/docker/abc\n"
    mountinfo = "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    files = {"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
             "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    root = fake_root(tmp_path, cgroup, mountinfo, files)
    assert cpu_quota(root) == 0.5
    assert available_cpus(root, affinity=8) == 1


def test_hybrid_host_reads_both_and_takes_the_tighter(tmp_path):
    """systemd's hybrid layout: v1 controllers beside a v2 tree at /sys/fs/cgroup/unified."""
    cgroup = "4:cpu,cpuacct:/\n0::/app\n"
    mountinfo = V1_MOUNTS + "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    files = {"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "600000\n",
             "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
             "/sys/fs/cgroup/unified/app/cpu.max": "400000 100000\n"}
    root = fake_root(tmp_path, cgroup, mountinfo, files)
    assert available_cpus(root, affinity=32) == 4


def test_no_cgroup_files_at_all(tmp_path):
    """Not Linux's layout (or /proc not mounted): the affinity alone."""
    assert cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path, affinity=5) == 5


def test_this_process_uses_sched_getaffinity_not_cpu_count(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: pytest.fail("os.cpu_count() ignores affinity and quota"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})
    quota = cpu_quota()
    assert available_cpus() == (3 if quota is None else min(3, max(1, math.ceil(quota))))
