"""``python -m camflow``: the same as the ``camflow`` command."""
import sys

from camflow.commands import main

sys.exit(main())
