"""Running the Pulumi program offline: Pulumi's mocks, the recording harness, ``mlops infra plan``.

Importing this package (or any module in it) changes nothing in the Pulumi runtime; the harness
installs its one runtime patch per run (`stacks.offline.harness.run_program`).
"""
