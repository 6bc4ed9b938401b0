"""hello/memory.py: the limit read from cgroup v1 and v2 trees (as a container or a host
sees them), the plan that fits connections and a buffer budget inside it, the budget.

The trees are folders shaped like /sys/fs/cgroup and /proc with the kernel's file
formats; tests/server/test_limits_live.py reads a real v1 memory cgroup.
"""

from __future__ import annotations

import pathlib
import threading

import pytest

from hello import memory

MIB = 1 << 20


def write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def machine(tmp_path):
    """(cgroup root, proc) with /proc/meminfo of a 24 GiB machine, 20 GiB available."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(proc / "meminfo", "MemTotal:       25165824 kB\nMemFree:  1 kB\n"
                            "MemAvailable:   20971520 kB\n")
    return root, proc


def v2(root: pathlib.Path, path: str, limit: str, anon=20 * MIB, shmem=16 * MIB):
    folder = root / path.strip("/")
    write(folder / "memory.max", limit + "\n")
    write(folder / "memory.stat", f"anon {anon}\nfile 30000000\nshmem {shmem}\n")
    write(folder / "memory.current", f"{anon + shmem + 30000000}\n")


def v1(root: pathlib.Path, path: str, limit: int, rss=20 * MIB, shmem=16 * MIB):
    folder = root / "memory" / path.strip("/")
    write(folder / "memory.limit_in_bytes", f"{limit}\n")
    write(folder / "memory.stat", f"cache 40000000\nrss {rss}\nshmem {shmem}\n"
                                  f"hierarchical_memory_limit {limit}\n"
                                  f"total_cache 40000000\ntotal_rss {rss}\ntotal_shmem {shmem}\n")


def test_cgroup_v2_in_a_container_reads_its_own_root(machine):
    root, proc = machine
    write(proc / "self" / "cgroup", "0::/\n")
    v2(root, "/", str(160 * MIB))
    assert memory.read(str(root), str(proc)) == memory.Reading(160 * MIB, 36 * MIB,
                                                               "cgroup v2 memory.max")


def test_cgroup_v2_on_a_host_takes_the_tightest_of_its_folder_and_parents(machine):
    root, proc = machine
    write(proc / "self" / "cgroup", "0::/system.slice/hello.service\n")
    v2(root, "/system.slice", str(128 * MIB))
    v2(root, "/system.slice/hello.service", "max", anon=5 * MIB, shmem=1 * MIB)
    reading = memory.read(str(root), str(proc))
    assert reading.limit == 128 * MIB and reading.used == 6 * MIB  # what hello's own folder holds


def test_cgroup_v2_named_outside_the_containers_view_falls_back_to_its_root(machine):
    root, proc = machine
    write(proc / "self" / "cgroup", "0::/../../kubepods/pod1/abc\n")
    v2(root, "/", str(64 * MIB))
    assert memory.read(str(root), str(proc)).limit == 64 * MIB


def test_cgroup_v2_without_a_limit_is_the_machine(machine):
    root, proc = machine
    write(proc / "self" / "cgroup", "0::/user.slice\n")
    v2(root, "/user.slice", "max")
    assert memory.read(str(root), str(proc)) == memory.Reading(
        24 << 30, 4 << 30, "the machine's MemTotal")


def test_cgroup_v1_reads_the_hierarchical_limit_and_rss_plus_shmem(machine):
    root, proc = machine
    write(proc / "self" / "cgroup", "12:cpu,cpuacct:/\n4:memory:/docker/abc\n1:name=systemd:/\n")
    v1(root, "/docker/abc", 192 * 1000 * 1000)
    assert memory.read(str(root), str(proc)) == memory.Reading(
        192 * 1000 * 1000, 36 * MIB, "cgroup v1 memory.limit_in_bytes")


def test_cgroup_v1_in_a_container_without_its_path_reads_the_mounted_root(machine):
    root, proc = machine
    write(proc / "self" / "cgroup", "4:memory:/docker/abc\n")
    v1(root, "/", 160 * MIB)
    assert memory.read(str(root), str(proc)).limit == 160 * MIB


def test_cgroup_v1_unlimited_is_the_machine(machine):
    root, proc = machine
    write(proc / "self" / "cgroup", "4:memory:/\n")
    v1(root, "/", 9223372036854771712)
    assert memory.read(str(root), str(proc)).source == "the machine's MemTotal"


def test_nothing_readable_is_no_limit(tmp_path):
    reading = memory.read(str(tmp_path / "none"), str(tmp_path / "none"))
    assert reading.limit is None
    assert memory.plan(reading, 1000) == memory.Plan(memory.UNLIMITED, 1000)


def test_garbage_in_the_files_is_not_a_limit(machine):
    root, proc = machine
    write(proc / "self" / "cgroup", "0::/\nnonsense\n")
    write(root / "memory.max", "lots\n")
    write(root / "memory.stat", "anon x\n")
    assert memory.read(str(root), str(proc)).source == "the machine's MemTotal"


@pytest.mark.parametrize("limit, used, connections, buffer", [
    (160 * MIB, 34 * MIB, 1000, 160 * MIB - 34 * MIB - 20 * MIB - 1000 * memory.CONNECTION_BYTES),
    (1 << 30, 40 * MIB, 1000, (1 << 30) - 40 * MIB - 128 * MIB - 1000 * memory.CONNECTION_BYTES),
    (60 * MIB, 36 * MIB, 512, 4 * MIB),  # 8 MiB free: half of it for connections
    (40 * MIB, 36 * MIB, 1, memory.MIN_BUFFER),  # nothing free: the least the budget gets
])
def test_the_plan_fits_connections_and_buffers_under_the_limit_with_headroom(
        limit, used, connections, buffer):
    assert memory.plan(memory.Reading(limit, used, "v2"), 1000) == memory.Plan(buffer, connections)


def test_the_budget_refuses_reservations_past_its_limit_but_counts_everything():
    budget = memory.Budget(100)
    assert budget.reserve(60) and not budget.exhausted()
    assert not budget.reserve(41)
    assert budget.reserve(40) and budget.exhausted()
    budget.add(-50)
    assert budget.held == 50 and not budget.exhausted()
    budget.add(80)  # a response being written is counted, never refused
    assert budget.held == 130 and budget.exhausted() and not budget.reserve(1)


def test_the_budget_counts_right_from_many_threads():
    budget = memory.Budget(1 << 40)

    def churn():
        for _ in range(10000):
            budget.reserve(3)
            budget.add(-3)
    threads = [threading.Thread(target=churn) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.held == 0
