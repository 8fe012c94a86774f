"""``python -m inspector``: the command line (see ``inspector.cli``)."""

import os
import sys

# transformers prints "PyTorch was not found..." on import; torch is not needed for tokenizers and templates
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from inspector.cli.main import main  # noqa: E402

if __name__ == "__main__":  # spawned worker processes import this module under another name
    sys.exit(main())
