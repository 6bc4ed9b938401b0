"""The memory hello may fill: its container's limit, and a budget for what clients buffer.

A container's memory limit kills the process that crosses it (an OOM kill: every
probe refused until the runtime restarts it). What clients make `hello serve` hold
is request bodies (up to --max-body-bytes each, read before the app runs) and
responses a slow reader has not taken yet; 300 slow 600 KB uploads took a 160 MiB
container past its limit in 15 s. So at start hello reads its cgroup's limit (v2
`memory.max`, v1 `hierarchical_memory_limit`; without one, the machine's memory)
and what it already holds (anonymous memory and tmpfs pages, which its own unpack
is: page cache the kernel can drop does not count), and keeps what clients make it
buffer inside the rest, less headroom and the cost of its connections. Past that,
new work is answered 503 with Retry-After (hello/http_parser.py, hello/event_loop.py) instead of
growing until the kernel kills it. Nothing spills to $TMPDIR: in every shape hello
ships in, $TMPDIR is a tmpfs charged to the same limit, and a full one reset uploads.

Figures (measured on the binary in a v1 memory cgroup, bench/RESULTS.md `## Memory`):
an open connection costs about 4 KB; a buffered body about its size, plus the copy
the app makes when it reads it (counted: BODY_COPIES).
"""

from __future__ import annotations

import dataclasses
import os
import threading

CGROUP = "/sys/fs/cgroup"
UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as a number near 2**63
CONNECTION_BYTES = 8 * 1024  # twice the ~4 KB measured per open connection
BODY_COPIES = 2  # a request body held for the app, and the bytes the app reads it into
HEADROOM_FRACTION = 8  # 1/8 of the limit (at least MIN_HEADROOM) never budgeted:
MIN_HEADROOM = 16 << 20  # allocator slack, the workers' stacks, what a request's app code makes
MIN_BUFFER = 2 << 20  # the budget never goes below this, whatever the limit says


@dataclasses.dataclass(frozen=True)
class Reading:
    """What the kernel says about this process's memory: bytes, limit None if none."""

    limit: int | None
    used: int
    source: str  # where the limit came from: cgroup v2, cgroup v1, the machine


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.isdigit() else None


def _stat(path: str) -> dict[str, int]:
    fields = {}
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if value.strip().isdigit():
                    fields[name] = int(value)
    except (OSError, ValueError):
        pass
    return fields


def _own_cgroups(proc: str) -> dict[str, str]:
    """{controller: path} from /proc/self/cgroup; cgroup v2's unified line is ''."""
    groups = {}
    try:
        with open(f"{proc}/self/cgroup", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    for controller in parts[1].split(","):
                        groups[controller] = parts[2]
    except OSError:
        pass
    return groups


def _folders_up(root: str, path: str) -> list[str]:
    """root/path and each parent up to root, those that exist: a container sees its
    own cgroup as the root, and /proc/self/cgroup may name a path outside its view."""
    parts = [part for part in path.split("/") if part and part not in (".", "..")]
    folders = [os.path.join(root, *parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [folder for folder in folders if os.path.isdir(folder)]


def _cgroup_v2(root: str, path: str) -> Reading | None:
    folders = _folders_up(root, path)
    limits = [_read_int(f"{folder}/memory.max") for folder in folders]
    limits = [limit for limit in limits if limit is not None]
    if not limits:  # "max" everywhere, or no memory controller
        return None
    stat = _stat(f"{folders[0]}/memory.stat")
    used = stat.get("anon", 0) + stat.get("shmem", 0) if stat else \
        _read_int(f"{folders[0]}/memory.current") or 0
    return Reading(min(limits), used, "cgroup v2 memory.max")


def _cgroup_v1(root: str, path: str) -> Reading | None:
    folders = _folders_up(f"{root}/memory", path)
    if not folders:
        return None
    stat = _stat(f"{folders[0]}/memory.stat")
    limit = stat.get("hierarchical_memory_limit") or _read_int(
        f"{folders[0]}/memory.limit_in_bytes")
    if limit is None or limit >= UNLIMITED:
        return None
    used = stat.get("total_rss", stat.get("rss", 0)) + stat.get("total_shmem", stat.get("shmem", 0))
    return Reading(limit, used, "cgroup v1 memory.limit_in_bytes")


def _machine(proc: str) -> Reading:
    info = _stat_kib(f"{proc}/meminfo")
    total = info.get("MemTotal:", 0)
    available = info.get("MemAvailable:", total)
    return Reading(total or None, max(0, total - available), "the machine's MemTotal")


def _stat_kib(path: str) -> dict[str, int]:
    fields = {}
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    fields[parts[0]] = int(parts[1]) * 1024
    except (OSError, ValueError):
        pass
    return fields


def read(root: str = CGROUP, proc: str = "/proc") -> Reading:
    """The tightest memory limit on this process and what it holds now."""
    groups = _own_cgroups(proc)
    if "" in groups:
        reading = _cgroup_v2(root, groups[""])
        if reading is not None:
            return reading
    if "memory" in groups:
        reading = _cgroup_v1(root, groups["memory"])
        if reading is not None:
            return reading
    return _machine(proc)


@dataclasses.dataclass(frozen=True)
class Plan:
    buffer_bytes: int  # what clients may make hello hold at once (bodies, responses)
    connection_limit: int  # lowered when the connections alone would not fit


def plan(reading: Reading, connection_limit: int) -> Plan:
    """Fit the connections and a buffer budget inside the limit, with headroom."""
    if reading.limit is None:
        return Plan(UNLIMITED, connection_limit)
    headroom = max(MIN_HEADROOM, reading.limit // HEADROOM_FRACTION)
    free = max(0, reading.limit - reading.used - headroom)
    fitting = max(1, min(connection_limit, free // 2 // CONNECTION_BYTES))
    return Plan(max(MIN_BUFFER, free - fitting * CONNECTION_BYTES), fitting)


class Budget:
    """Bytes held for clients against a limit. Reservations are refused past it (the
    caller answers 503); what is already being written is counted, never refused."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def reserve(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            return True

    def add(self, size: int) -> None:
        """Count bytes already held (size may be negative: bytes given back)."""
        with self._lock:
            self.held += size

    def exhausted(self) -> bool:
        return self.held >= self.limit
