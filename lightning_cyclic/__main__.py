"""``python -m lightning_cyclic train schedule=onecycle``: the ``lightning-cyclic`` command."""

import sys

from lightning_cyclic.cli import main

if __name__ == "__main__":
    sys.exit(main())
