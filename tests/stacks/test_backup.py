"""AWS Backup under the mocks: every env backs up its MLflow database and its artifacts bucket
into an encrypted vault, for as long as its stack config says, with a role AWS Backup assumes."""

from __future__ import annotations

import json

import pytest

from stacks.components.backup import MANAGED_POLICIES
from stacks.config import load_stack_config
from tests.conftest import StackPlans
from tests.support.plans import one

ENVS = ("dev", "staging", "prod")


@pytest.mark.parametrize("env", ENVS)
def test_every_env_backs_up_the_database_and_the_artifacts_bucket(
    plans: StackPlans, env: str
) -> None:
    plan = plans[env]
    selection = one(plan, "aws:backup/selection:Selection").inputs
    rds = one(plan, "aws:rds/instance:Instance").inputs
    artifacts = one(plan, "aws:s3/bucket:Bucket", "storage-artifacts").inputs
    region = "eu-west-1"
    assert sorted(selection["resources"]) == sorted(
        [
            f"arn:aws:rds:{region}:123456789012:db:{rds['identifier']}",  # the mocks' account
            f"arn:aws:s3:::{artifacts['bucket']}",
        ]
    )
    backup_plan = one(plan, "aws:backup/plan:Plan")
    assert selection["planId"] == f"{backup_plan.name}-id"
    # S3 backups need versioning: the artifacts bucket has it
    versioning = one(plan, "aws:s3/bucketVersioning:BucketVersioning", "storage-artifacts")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"


@pytest.mark.parametrize("env", ENVS)
def test_retention_is_the_configured_one_and_the_vault_is_encrypted(
    plans: StackPlans, env: str
) -> None:
    plan = plans[env]
    config = load_stack_config(env)
    (rule,) = one(plan, "aws:backup/plan:Plan").inputs["rules"]
    assert rule["lifecycle"]["deleteAfter"] == config.database.backup_retention_days
    assert rule["schedule"].startswith("cron(")
    vault = one(plan, "aws:backup/vault:Vault").inputs
    assert rule["targetVaultName"] == vault["name"] == f"mlops-{env}"
    key = one(plan, "aws:kms/key:Key", "backup-vault")
    assert vault["kmsKeyArn"].startswith("arn:aws:kms:") and vault["kmsKeyArn"].endswith(key.name)
    assert key.inputs["enableKeyRotation"] is True


def test_retention_differs_per_env_as_configured(plans: StackPlans) -> None:
    retention = [
        one(plans[env], "aws:backup/plan:Plan").inputs["rules"][0]["lifecycle"]["deleteAfter"]
        for env in ENVS
    ]
    assert retention == [load_stack_config(env).database.backup_retention_days for env in ENVS]
    assert len(set(retention)) == len(ENVS), "each env keeps its backups for its own time"


@pytest.mark.parametrize("env", ENVS)
def test_aws_backup_assumes_a_role_with_the_managed_backup_and_restore_policies(
    plans: StackPlans, env: str
) -> None:
    plan = plans[env]
    role = one(plan, "aws:iam/role:Role", "backup-service")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "backup.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    attached = {
        r.inputs["policyArn"]
        for r in plan.resources
        if r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment" and r.parent == "backup"
    }
    assert attached == set(MANAGED_POLICIES.values())
    assert {a.rsplit("/", 1)[-1] for a in attached} == {
        "AWSBackupServiceRolePolicyForBackup",
        "AWSBackupServiceRolePolicyForRestores",
        "AWSBackupServiceRolePolicyForS3Backup",
        "AWSBackupServiceRolePolicyForS3Restore",
    }
    selection = one(plan, "aws:backup/selection:Selection").inputs
    assert selection["iamRoleArn"].endswith(":role/backup-service")


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("preview", [True, False])
def test_backup_resources_are_tagged_and_pass_the_policy_pack(
    plans: StackPlans, env: str, preview: bool
) -> None:
    plan = plans.of(env, preview)
    tags = load_stack_config(env).tags
    ours = [r for r in plan.resources if r.parent == "backup"]
    assert {r.type for r in ours} == {
        "aws:kms/key:Key",
        "aws:backup/vault:Vault",
        "aws:backup/plan:Plan",
        "aws:backup/selection:Selection",
        "aws:iam/role:Role",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    }
    for resource in ours:
        if resource.type in {
            "aws:kms/key:Key",
            "aws:backup/vault:Vault",
            "aws:backup/plan:Plan",
            "aws:iam/role:Role",
        }:
            assert tags.items() <= resource.inputs["tags"].items(), resource.name
    names = {r.name for r in ours}
    assert [v for v in plan.policy["violations"] if v["resource"] in names] == []
