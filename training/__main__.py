"""``python -m training MODEL [options]``: train one of the shipped models (see ``--help``)."""

import sys

from training.loop import main

if __name__ == "__main__":
    sys.exit(main())
