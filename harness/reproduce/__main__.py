"""``python -m harness.reproduce`` (what ./reproduce.sh runs)."""
import sys

from harness.reproduce.cli import main

if __name__ == "__main__":
    sys.exit(main())
