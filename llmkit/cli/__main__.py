"""``python -m llmkit.cli``: the same as the ``llmkit`` command."""

import sys

from llmkit.cli import main

sys.exit(main())
