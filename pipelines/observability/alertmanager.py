"""Where alerts go: one Alertmanager receiver per severity, routed by the alert's labels.

``critical`` pages (PagerDuty), ``warning`` goes to chat (Slack), ``info`` opens a ticket (a
webhook with a bearer token). No credential is in the configuration: each receiver reads its
key, URL or token from a file of the Secret ``alertmanager-receivers``, which the chart mounts
into Alertmanager under ``/etc/alertmanager/secrets/alertmanager-receivers/`` (`SECRET_DIR`);
the operators fill the Secret (the stack never holds these credentials). The
kube-prometheus-stack's own heartbeat alerts (``Watchdog``, ``InfoInhibitor``) go nowhere
(``null``), as in the chart's default.
"""

from __future__ import annotations

from typing import Any

RECEIVER_SECRET = "alertmanager-receivers"
SECRET_DIR = f"/etc/alertmanager/secrets/{RECEIVER_SECRET}"
RECEIVERS = {"critical": "pager", "warning": "chat", "info": "ticket"}
"""Severity label → receiver."""
SECRET_KEYS = {
    "pager": "pagerduty-routing-key",
    "chat": "slack-webhook-url",
    "ticket": "ticket-token",
}
"""Receiver → the key of `RECEIVER_SECRET` it reads."""
TICKET_URL = "http://ticket-bridge.monitoring.svc:8080/alerts"
"""The ticket webhook (the tracker's bridge in the cluster; the URL holds no credential, the
bearer token is read from the Secret)."""


def alertmanager_config() -> dict[str, Any]:
    """The Alertmanager configuration (``alertmanager.config`` of the chart)."""
    keys = {name: f"{SECRET_DIR}/{key}" for name, key in SECRET_KEYS.items()}
    return {
        "route": {
            "receiver": "ticket",  # an alert without a known severity still reaches someone
            "group_by": ["alertname", "pipeline", "step", "model_version"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"receiver": "null", "matchers": ['alertname=~"Watchdog|InfoInhibitor"']},
                *(
                    {"receiver": receiver, "matchers": [f'severity="{severity}"']}
                    for severity, receiver in RECEIVERS.items()
                ),
            ],
        },
        "inhibit_rules": [
            {  # a page says it already: the same alert's lower severities stay quiet
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity=~"warning|info"'],
                "equal": ["alertname"],
            }
        ],
        "receivers": [
            {"name": "null"},
            {
                "name": "pager",
                "pagerduty_configs": [{"routing_key_file": keys["pager"], "send_resolved": True}],
            },
            {
                "name": "chat",
                "slack_configs": [
                    {
                        "api_url_file": keys["chat"],
                        "channel": "#mlops-alerts",
                        "send_resolved": True,
                        "title": "{{ .CommonLabels.alertname }} ({{ .Status }})",
                        "text": "{{ .CommonAnnotations.summary }}\n"
                        "{{ .CommonAnnotations.runbook_url }}",
                    }
                ],
            },
            {
                "name": "ticket",
                "webhook_configs": [
                    {
                        "url": TICKET_URL,
                        "send_resolved": False,
                        "http_config": {"authorization": {"credentials_file": keys["ticket"]}},
                    }
                ],
            },
        ],
    }
