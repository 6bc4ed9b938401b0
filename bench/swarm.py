"""Rolling updates of the Swarm stack on three real nodes: how long one takes and
the longest gap any client saw.

Starts tests/infra/swarm (its own namespaces, 10.232.2.0/24), deploys the image
named by $HELLO_IMAGE (default hello:latest in the engine DOCKER_HOST names) by ID
to every node, then alternates it with a v2 (the same image plus one ENV line)
ROUNDS times through deploy/swarm/deploy, a client per node polling every 20 ms on
new connections the whole time. Results: the `## Swarm` section of bench/RESULTS.md.
Needs root. Stops the swarm by PID at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from common import ROOT, machine, median, table, write_section

SWARM = ROOT / "tests" / "infra" / "swarm"
DEPLOY = ROOT / "deploy" / "swarm" / "deploy"
POLLER = ROOT / "tests" / "swarm" / "poller.py"
STATE = os.environ.get("HELLO_SWARM_BENCH_DIR", "/var/tmp/hello-swarm-bench")
SUBNET = os.environ.get("HELLO_SWARM_BENCH_SUBNET", "10.232.2")
NAME = os.environ.get("HELLO_SWARM_BENCH_NAME", "hswb")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DOCKER = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


def run(argv: list[str], **kwargs) -> str:
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=900, **kwargs)
    if result.returncode != 0:
        sys.exit(f"bench/swarm: {' '.join(argv[:3])}... exited {result.returncode}: {result.stderr[-1500:]}")
    return result.stdout


def main() -> int:
    if os.geteuid() != 0:
        print("bench/swarm: needs root (network namespaces, dockerd)", file=sys.stderr)
        return 1
    image = os.environ.get("HELLO_IMAGE", "hello:latest")
    v1 = run([DOCKER, "image", "inspect", "-f", "{{.Id}}", image]).strip()
    v2 = run([DOCKER, "build", "-q", "-"], input=f'FROM {v1}\nENV HELLO_MESSAGE="hello v2"\n').strip()
    run([str(SWARM), "stop", "--dir", STATE, "--purge"])
    out = run([str(SWARM), "start", "--dir", STATE, "--subnet", SUBNET, "--name", NAME])
    nodes = [line.split("=", 1)[1] for line in out.split() if line.startswith("NODE_")]
    rows, gaps, seconds = [], [], []
    try:
        loads = [arg for node in nodes for arg in ("--load", node)]
        run([str(DEPLOY), nodes[0], "--image", v1, *loads])
        for k in range(ROUNDS):
            target = v2 if k % 2 == 0 else v1
            pollers = [subprocess.Popen(["ip", "netns", "exec", f"{NAME}-sw", sys.executable, str(POLLER),
                                         "--host", f"{SUBNET}.{11 + i}"], stdout=subprocess.PIPE, text=True)
                       for i in range(len(nodes))]
            time.sleep(1)
            started = time.monotonic()
            result = subprocess.run([str(DEPLOY), nodes[0], "--image", target, *loads], check=False,
                                    capture_output=True, text=True, timeout=900)
            took = time.monotonic() - started
            for poller in pollers:
                poller.send_signal(signal.SIGTERM)
            reports = [json.loads(p.communicate(timeout=30)[0]) for p in pollers]
            gap = max(r["longest_gap_ms"] for r in reports)
            seconds.append(took)
            gaps.append(gap)
            rows.append([k + 1, "v2" if target == v2 else "v1", result.returncode, round(took, 1),
                         sum(r["requests"] for r in reports), sum(r["failed"] for r in reports), gap])
            print(rows[-1], file=sys.stderr)
    finally:
        subprocess.run([str(SWARM), "stop", "--dir", STATE, "--purge"], check=False, capture_output=True,
                       timeout=600)
    body = (f"Machine: {machine()}. Three dockerd 20.10 nodes in network namespaces on this one "
            "machine (tests/infra/swarm), the stack of deploy/swarm/stack.yml (global, host network, "
            "--reuse-port, start-first, healthcheck --own every 5 s), images copied by ID. Each round: "
            "deploy/swarm/deploy from the command to every task running the release (image already "
            "on the nodes), while one client per node polls GET / every 20 ms on a new connection. "
            "Gap = the longest time between two successful answers one client saw.\n\n"
            + table(["round", "to", "exit", "seconds", "requests", "failed", "longest gap ms"], rows)
            + f"\n\nMedian rolling update of 3 nodes: {median(seconds):.1f} s; longest gap in any round: "
            f"{max(gaps):.0f} ms (a 20 ms poller on a 2-core machine that also runs the three nodes).")
    write_section("Swarm", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
