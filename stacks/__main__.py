"""Pulumi entry point (Pulumi.yaml: ``main: stacks/``). All the work is in `stacks.program`."""

from stacks.program import main

main()
