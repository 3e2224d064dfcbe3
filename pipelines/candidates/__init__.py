"""Candidates: one verified artifact promoted dev → staging → prod.

A candidate is created where the gate promotes (an env that trains): an immutable, write-once
record identified by the digests of what serving runs — the model archive the GitOps pin names
and the serving image — with its lineage (model version, MLflow run, dataset hash, code commit,
the gate's ledger record). A move into the next env runs with that env's own settings: it reads
the stage before it (candidate record, artifacts, ledgers: read only), copies the artifacts into
its own storage, checking every digest, registers the model in its own MLflow with lineage tags
and pins it in its own GitOps overlay — never reading one env's MLflow from another. A move
needs the gate's promotion, a soak in the stage before with no rollback, and where the env says
so an approval; a candidate rejected or rolled back anywhere never moves again. docs/deploy.md,
"Promoting a candidate through the environments".
"""
