"""`python -m agents.dma`: the same as `dyncast-dma`."""

import sys

from agents.dma.cli import main

sys.exit(main())
