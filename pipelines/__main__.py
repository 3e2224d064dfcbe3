"""``python -m pipelines`` is the ``mlops`` command."""

from pipelines.cli import main

main()
