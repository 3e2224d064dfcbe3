"""What judges or moves an alias: the gate, the monitor, promotion, the ledger, GitOps."""
