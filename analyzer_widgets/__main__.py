"""``python -m analyzer_widgets``: the command line."""

import sys

from analyzer_widgets.cli import main

if __name__ == "__main__":
    sys.exit(main())
