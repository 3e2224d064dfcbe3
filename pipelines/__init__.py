"""The MLOps library and the ``mlops`` CLI: foundations at this level, one folder per concern."""
