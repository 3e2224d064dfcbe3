"""Alerts, SLOs and dashboards as code, generated from the metric catalogue (`pipelines.metrics`)
into ``platform/monitoring/`` (``mlops monitoring render``; the stack deploys those files)."""
