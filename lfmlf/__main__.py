"""``python -m lfmlf``: the ``lfmlf`` command."""
from __future__ import annotations

import sys

from lfmlf.cli import main

sys.exit(main())
