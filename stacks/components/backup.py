"""Backups: an AWS Backup vault (KMS-encrypted), a daily plan and the selection that puts the
MLflow database and the artifacts bucket in it, with the IAM role AWS Backup works as.

S3 backups need bucket versioning, which `stacks.components.buckets` enables on every bucket.
Retention is the database's (``database.backupRetentionDays``), at most 35 days, which is also
the longest continuous (point-in-time) backup AWS Backup keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stacks.components.identity import service_trust_policy

SCHEDULE = "cron(0 3 * * ? *)"
"""Daily at 03:00 UTC."""
START_WINDOW_MINUTES = 60
COMPLETION_WINDOW_MINUTES = 360
MANAGED_POLICIES = {
    "backup": "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
    "restore": "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
    "s3-backup": "arn:aws:iam::aws:policy/AWSBackupServiceRolePolicyForS3Backup",
    "s3-restore": "arn:aws:iam::aws:policy/AWSBackupServiceRolePolicyForS3Restore",
}
"""AWS managed policies of the role AWS Backup assumes: backup and restore of the services it
covers by default (RDS among them), and of S3, which has its own pair."""


def rds_instance_arn(identifier: str) -> pulumi.Output[str]:
    """The ARN of the RDS instance `identifier` in the stack's account and region."""
    partition = aws.get_partition_output().partition
    region = aws.get_region_output().region
    account = aws.get_caller_identity_output().account_id
    return pulumi.Output.concat(
        "arn:", partition, ":rds:", region, ":", account, ":db:", identifier
    )


@dataclass(frozen=True)
class BackupArgs:
    """Inputs of `Backup`."""

    env: str
    retention_days: int
    """Days each recovery point is kept (``database.backupRetentionDays``)."""
    db_instance_identifier: str
    """The RDS instance's identifier (``mlops-<env>-mlflow``, see `stacks.components.database`)."""
    bucket_arn: pulumi.Input[str]
    """The artifacts bucket (versioned)."""
    tags: dict[str, str]


class Backup(pulumi.ComponentResource):
    """The backup vault, plan, selection and service role of one stack."""

    vault_name: pulumi.Output[str]
    plan_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: BackupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Register the vault and its key, the plan, the role and the selection as children."""
        super().__init__("mlops:backup:Backup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags
        key = aws.kms.Key(
            f"{name}-vault",
            description=f"AWS Backup vault encryption ({args.env})",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        vault = aws.backup.Vault(
            f"{name}-vault",
            name=f"mlops-{args.env}",
            kms_key_arn=key.arn,
            tags=tags,
            opts=child,
        )
        plan = aws.backup.Plan(
            f"{name}-plan",
            name=f"mlops-{args.env}-daily",
            rules=[
                {
                    "rule_name": "daily",
                    "target_vault_name": vault.name,
                    "schedule": SCHEDULE,
                    "start_window": START_WINDOW_MINUTES,
                    "completion_window": COMPLETION_WINDOW_MINUTES,
                    "lifecycle": {"delete_after": args.retention_days},
                    "recovery_point_tags": tags,
                }
            ],
            tags=tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-service",
            assume_role_policy=service_trust_policy("backup.amazonaws.com"),
            description=f"AWS Backup: back up and restore the mlops-{args.env} database and bucket",
            tags=tags,
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-service-{purpose}", role=role.name, policy_arn=arn, opts=child
            )
            for purpose, arn in MANAGED_POLICIES.items()
        ]
        aws.backup.Selection(
            f"{name}-selection",
            name=f"mlops-{args.env}-database-artifacts",
            plan_id=plan.id,
            iam_role_arn=role.arn,
            resources=[rds_instance_arn(args.db_instance_identifier), args.bucket_arn],
            opts=pulumi.ResourceOptions(parent=self, depends_on=attachments),
        )
        self.vault_name = vault.name
        self.plan_id = plan.id
        self.register_outputs({"vault_name": self.vault_name, "plan_id": self.plan_id})
