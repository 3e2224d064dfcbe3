"""The BentoML service (runtime: service, contract, model, inference log) and its build."""
