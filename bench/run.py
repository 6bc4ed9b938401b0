"""Run every benchmark in turn; each writes its own section of bench/RESULTS.md.

`make bench` runs them all; `make bench BENCH_ARGS="service"` only the named ones.
"""

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ORDER = ["service", "binary", "image", "metrics", "swarm", "resources", "probe", "soak", "platforms"]


def main() -> int:
    wanted = sys.argv[1:] or ORDER
    for name in wanted:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"bench: no benchmark named {name!r} ({script} is missing)", file=sys.stderr)
            return 2
        print(f"== bench/{name}.py", file=sys.stderr)
        code = subprocess.call([sys.executable, str(script)])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
