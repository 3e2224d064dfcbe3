"""The deterministic synthetic market and its archive mirror: the embedded default data.

Production code never imports this package (an import contract checks it)."""
