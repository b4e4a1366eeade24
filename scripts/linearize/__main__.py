import sys

from scripts.linearize.cli import main

if __name__ == "__main__":
    sys.exit(main())
