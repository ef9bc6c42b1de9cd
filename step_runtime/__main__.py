"""`python -m step_runtime` is the `alertops` command."""
import sys

from step_runtime.cli import main

sys.exit(main())
