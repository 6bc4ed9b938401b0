"""`python -m hello` and the frozen entry point.

`hello healthcheck` is tried first on its own (hello/healthcheck_cli.py): a probe that
runs every few seconds should not pay for the whole command line's imports."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["healthcheck"]:
        import os

        from hello.healthcheck_cli import run

        status = run(sys.argv[2:], os.environ)
        if status is not None:
            sys.exit(status)
    from hello.cli import main

    sys.exit(main())
