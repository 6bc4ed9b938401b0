"""Platforms: the amd64 binary (baseline) beside the arm64 one, in one run.

Size and gzip size of each release file and of the image index, and cold start
(exec to the first 200 on /healthz): amd64 natively, arm64 through qemu's binfmt on
this x86_64 machine. The arm64 start says what emulation costs here, not what arm64
hardware does: that figure needs an arm64 machine.

    python bench/platforms.py [RUNS]      (after make binary, make binary-arm64, make image-index)
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys

from common import ROOT, cold_starts, machine, median, table, write_section

sys.path.insert(0, str(ROOT))
from hello import __version__  # noqa: E402

DIST = ROOT / "dist"


def mb(size: int) -> float:
    return size / 1_000_000


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    files = {arch: DIST / f"hello-{__version__}-linux-{arch}" for arch in ("amd64", "arm64")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        print(f"bench/platforms.py: build first (make binary, make binary-arm64): {', '.join(missing)}",
              file=sys.stderr)
        return 2
    rows, base = [], {}
    for arch, path in files.items():
        data = path.read_bytes()
        packed = len(gzip.compress(data, compresslevel=6))
        starts = cold_starts(lambda port, p=path: [str(p), "serve", "--host", "127.0.0.1",
                                                    "--port", str(port)], runs=runs)
        figures = {"size": mb(len(data)), "gz": mb(packed), "start": median(starts) * 1000}
        line = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=60,
                              check=False).stdout
        python = re.search(r"python (\S+?)[,)]", line)
        base = base or figures
        rows.append([f"linux/{arch}" + (" (qemu)" if arch == "arm64" else ""),
                     python[1] if python else "?",
                     figures["size"], figures["size"] / base["size"], figures["gz"],
                     figures["gz"] / base["gz"], figures["start"], figures["start"] / base["start"]])
    index = DIST / "hello-oci.tar"
    note = (f"The image index (`make image-index`, layers gzipped): {mb(index.stat().st_size):.2f} MB "
            "for both platforms." if index.is_file() else "No dist/hello-oci.tar in this run.")
    body = "\n".join([
        f"Machine: {machine()}. One run; starts are medians of {runs} (exec to first 200 on /healthz).",
        "arm64 runs through qemu-user (binfmt) here: its start is the price of emulation, not of "
        "arm64 hardware, which is not measured here. Built here: amd64 by `make binary`, arm64 by "
        "`make binary-arm64` (Debian's Python in the arm64 root); CI builds both in the "
        "Dockerfile's builder, with one Python.",
        "",
        table(["binary", "python", "MB", "x amd64", "MB gzip", "x amd64", "start ms", "x amd64"], rows),
        "",
        note,
    ])
    print(body)
    write_section("Platforms", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
