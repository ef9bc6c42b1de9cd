"""`python -m step_runtime` is the `alertops` command."""
from step_runtime.cli import run

run()
