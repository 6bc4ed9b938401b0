"""`python -m hello` and the frozen entry point."""

import sys

from hello.cli import main

if __name__ == "__main__":
    sys.exit(main())
