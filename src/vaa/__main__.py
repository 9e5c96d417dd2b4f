"""``python -m vaa`` (and ``torchrun --nproc_per_node N -m vaa ...``): the ``vaa`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
