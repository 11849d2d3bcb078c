"""`python -m latentray ...`: the `latentray` command."""
import sys

from latentray.runtime.cli import main

sys.exit(main())
