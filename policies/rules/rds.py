"""RDS: storage encryption, no public access, backups and (where required) resilience."""

from __future__ import annotations

from typing import Any

from policies.rules.base import Report, config_of, get, rule, who

RDS_INSTANCE = "aws:rds/instance:Instance"


@rule("rds-storage-encrypted", "RDS storage encrypted", "mandatory")
def rds_encrypted(args: Any, report: Report) -> None:
    """RDS storage encrypted."""
    if args.resource_type == RDS_INSTANCE and get(args.props, "storageEncrypted") is not True:
        report(f"{who(args)}: storageEncrypted must be true")


@rule("rds-not-public", "RDS not publicly accessible", "mandatory")
def rds_private(args: Any, report: Report) -> None:
    """RDS never publicly accessible."""
    if args.resource_type == RDS_INSTANCE and get(args.props, "publiclyAccessible") is True:
        report(f"{who(args)}: publiclyAccessible must be false")


@rule(
    "rds-backup-retention",
    "RDS backups kept long enough",
    "mandatory",
    config_schema={"minBackupRetentionDays": {"type": "integer", "minimum": 1}},
)
def rds_backups(args: Any, report: Report) -> None:
    """Backup retention of at least ``minBackupRetentionDays`` (1; 7 in prod)."""
    if args.resource_type != RDS_INSTANCE:
        return
    minimum = int(config_of(args).get("minBackupRetentionDays", 1))
    days = get(args.props, "backupRetentionPeriod", default=0)
    if int(days or 0) < minimum:
        report(f"{who(args)}: backupRetentionPeriod is {days}, needs >= {minimum}")


@rule(
    "rds-resilience",
    "RDS multi-AZ with deletion protection where required",
    "mandatory",
    config_schema={"requireResilience": {"type": "boolean"}},
)
def rds_resilience(args: Any, report: Report) -> None:
    """Multi-AZ and deletion protection where ``requireResilience`` (prod)."""
    if args.resource_type != RDS_INSTANCE or not config_of(args).get("requireResilience"):
        return
    missing = [p for p in ("multiAz", "deletionProtection") if get(args.props, p) is not True]
    if missing:
        report(f"{who(args)}: {' and '.join(missing)} must be true in this environment")
