"""The typed stack config: every env is a value of one model; a wrong value names its key."""

from __future__ import annotations

import copy
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.errors import PipelineError
from stacks import config as config_module
from stacks import support_matrix
from stacks.config import load_stack_config, parse_stack_config
from tests.conftest import REPO


def test_stack_config_errors_name_the_key() -> None:
    good = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    config, providers = parse_stack_config(good, "Pulumi.dev.yaml")
    assert config.workflows.storage_url.startswith("s3://") and providers == {
        "aws:region": "eu-west-1",
        "aws:allowedAccountIds": ["111111111111"],
    }

    def broken(key: str, value: object) -> dict[str, Any]:
        document: dict[str, Any] = copy.deepcopy(good)
        section, _, field = key.partition(".")
        if field:
            document["config"][f"mlops-platform:{section}"][field] = value
        else:
            document["config"][f"mlops-platform:{section}"] = value
        return document

    cases = [
        ("costCentre", "y", r"mlops-platform:costCentre: Extra inputs are not permitted"),
        ("workflows.image", "r/p:latest", r"workflows\.image: .*immutable tag"),
        (
            "workflows.lookbackDays",
            "many",
            r"workflows\.lookbackDays: Input should be a valid integer",
        ),
        (
            "network.privateSubnetCidrs",
            ["10.20.64.0/19", "10.99.0.0/19"],
            r"10\.99\.0\.0/19 does not fit the VPC",
        ),
        ("network.publicSubnetCidrs", ["10.20.0.0/20", "10.20.64.0/20"], r"overlap"),
        ("cluster.publicAccessCidrs", ["0.0.0.0/0"], r"opens the API to the whole internet"),
        (
            "workflows.settings",
            {"MLOPS_GATE_MIN_AUC_DELTAS": "0.1"},
            r"workflows\.settings: .*unknown setting\(s\) \['MLOPS_GATE_MIN_AUC_DELTAS'\]",
        ),
        (
            "workflows.settings",
            {"MLOPS_MONITOR_WINDOWS": "zero"},
            r"workflows\.settings: .*MLOPS_MONITOR_WINDOWS: Input should be a valid integer",
        ),
        # supported versions, as of the support table's date (stacks/support_matrix.py)
        (
            "cluster.version",
            "1.33",
            r"mlops-platform:cluster\.version: 1\.33 left standard support on 2026-07-29 "
            r"\(as of 2026-11-30\); use one of 1\.35, 1\.36 — ",
        ),
        (
            "cluster.version",
            "1.34",
            r"cluster\.version: 1\.34 leaves standard support on 2026-12-02, less than 90 days "
            r"after 2026-11-30; use one of 1\.35, 1\.36 — ",
        ),
        ("cluster.version", "1.40", r"cluster\.version: 1\.40 is not in the support table"),
        (
            "database.engineVersion",
            "16.4",
            r"database\.engineVersion: 16\.4 pins a minor version, .*one of 16, 17, 18 — ",
        ),
        (
            "database.engineVersion",
            "14",
            r"database\.engineVersion: 14 is not in the support table .*use one of 16, 17, 18 — ",
        ),
        (
            "platform.argocdChartVersion",
            "8.1.2",
            r"mlops-platform:platform\.argocdChartVersion: 8\.1\.2 is not in the support table",
        ),
        (
            "platform.argocdChartVersion",
            "9.4.18",
            r"platform\.argocdChartVersion: 9\.4\.18 left standard support on ~2026-11-03",
        ),
        # AWS constraints
        (
            "storage.rawTransitionDays",
            14,
            r"mlops-platform:storage\.rawTransitionDays: 14 days is under the 30 days S3 requires "
            r"before a lifecycle transition to STANDARD_IA",
        ),
        (
            "database.instanceClass",
            "db.m5.large",
            r"database\.instanceClass: db\.m5\.large is not an RDS for PostgreSQL class",
        ),
        ("database.instanceClass", "db.t4g.4xlarge", r"database\.instanceClass: db\.t4g\.4xlarge"),
        # access entries and the storage wiring
        ("cluster.adminRoleArns", [], r"cluster\.adminRoleArns: List should have at least 1"),
        (
            "cluster.adminRoleArns",
            ["arn:aws:iam::111111111111:user/alice"],
            r"cluster\.adminRoleArns: 'arn:aws:iam::111111111111:user/alice' is not an IAM role",
        ),
        (
            "cluster.ciRoleArn",
            "arn:aws:iam::111111111111:role/mlops-platform-admin",
            r"cluster: ciRoleArn: .* is also in adminRoleArns",
        ),
        (
            "workflows.storageUrl",
            "s3://mlops-platform-dev-111111111111-curated/v2",
            r"mlops-platform:workflows\.storageUrl: "
            r"s3://mlops-platform-dev-111111111111-curated/v2 is not where this stack keeps "
            r"the layout in its curated bucket: "
            r"s3://mlops-platform-dev-111111111111-curated/v1",
        ),
        (
            "workflows.rawStorageUrl",
            "s3://somebody-elses-bucket/v1",
            r"workflows\.rawStorageUrl: .* in its raw bucket",
        ),
    ]
    for key, value, message in cases:
        with pytest.raises(PipelineError, match=message):
            parse_stack_config(broken(key, value), "Pulumi.dev.yaml")


def test_environments_are_values_of_one_model() -> None:
    configs = {env: load_stack_config(env) for env in ("dev", "staging", "prod")}
    assert {c.env for c in configs.values()} == {"dev", "staging", "prod"}
    assert len({c.workflows.storage_url for c in configs.values()}) == 3
    # the gate is stricter in prod, and every env's decisions commit to its GitOps repository
    delta = {
        env: float(c.workflows.settings["MLOPS_GATE_MIN_AUC_DELTA"]) for env, c in configs.items()
    }
    assert delta["dev"] <= delta["staging"] <= delta["prod"] and delta["prod"] > 0
    assert all(
        c.workflows.settings["MLOPS_GITOPS_REMOTE"] == c.platform.gitops_repo_url
        for c in configs.values()
    )


def test_s3_transition_minimum_depends_on_the_storage_class() -> None:
    good = yaml.safe_load((REPO / "stacks" / "Pulumi.prod.yaml").read_text())

    def storage(**values: object) -> dict[str, Any]:
        document: dict[str, Any] = copy.deepcopy(good)
        document["config"]["mlops-platform:storage"].update(values)
        return document

    with pytest.raises(PipelineError, match=r"29 days is under the 30 days .* ONEZONE_IA"):
        parse_stack_config(
            storage(rawTransitionStorageClass="ONEZONE_IA", rawTransitionDays=29), "p"
        )
    with pytest.raises(PipelineError, match=r"storage\.rawTransitionStorageClass: Input should"):
        parse_stack_config(storage(rawTransitionStorageClass="REDUCED_REDUNDANCY"), "p")
    config, _ = parse_stack_config(
        storage(rawTransitionStorageClass="GLACIER_IR", rawTransitionDays=0), "p"
    )
    assert config.storage.raw_transition_days == 0
    # the shipped stacks: prod moved from 14 to the S3 minimum
    assert {
        load_stack_config(e).storage.raw_transition_days for e in ("dev", "staging", "prod")
    } == {30}


def test_support_checks_read_the_tables_date_never_the_clock() -> None:
    assert date(2026, 11, 30) == support_matrix.AS_OF
    eks = support_matrix.EKS
    assert [r.version for r in eks.choosable()] == ["1.35", "1.36"]
    assert eks.problem("1.36") is None
    # the same version, judged as of later days
    assert "less than 90 days after 2027-05-05" in str(eks.problem("1.36", date(2027, 5, 5)))
    assert str(eks.problem("1.36", date(2027, 8, 3))).startswith(
        "cluster.version: 1.36 left standard support on ~2027-08-02 (as of 2027-08-03)"
    )
    assert "use one of none" in str(eks.problem("1.36", date(2027, 8, 3)))
    clock = re.compile(r"\b(today|now|utcnow|time|time_ns|monotonic|localtime|gmtime)\(")
    for source in sorted(Path(str(config_module.__file__)).parent.rglob("*.py")):
        assert not clock.search(source.read_text()), f"{source} reads the clock"


def test_every_pin_is_in_the_support_table_and_documented() -> None:
    configs = [load_stack_config(env) for env in ("dev", "staging", "prod")]
    pins = {
        support_matrix.EKS: {c.cluster.version for c in configs},
        support_matrix.POSTGRES: {c.database.engine_version for c in configs},
        support_matrix.ARGO_CD: {c.platform.argocd_chart_version for c in configs},
        support_matrix.ARGO_WORKFLOWS: {c.platform.argo_workflows_chart_version for c in configs},
        support_matrix.PYTHON: _python_pins(),
    }
    docs = (REPO / "docs" / "versions.md").read_text()
    assert support_matrix.AS_OF.isoformat() in docs
    for product, versions in pins.items():
        assert versions, product.key
        for version in versions:
            assert product.problem(version) is None, product.problem(version)
            release = product.release(version)
            assert release is not None
            # the doc names each pin and its end of standard support
            assert version in docs and release.standard_support_ends.isoformat() in docs


def _python_pins() -> set[str]:
    """The Python minor of every image the repository builds (``python:3.11.15-slim-...``)."""
    from bentos.runtime import PYTHON_IMAGE

    texts = [PYTHON_IMAGE]
    texts += [p.read_text() for p in (REPO / "Dockerfile", *REPO.glob("images/*/Dockerfile"))]
    found = {m for text in texts for m in re.findall(r"\bpython:(3\.\d+)[.\d]*-", text)}
    assert found
    return found


def test_platform_trains_is_the_one_value_behind_mlops_trains_and_the_suspended_training() -> None:
    from pipelines.orchestration.argo import render
    from pipelines.orchestration.dag import get_pipeline

    suspended = {}
    for env in ("dev", "staging", "prod"):
        config = load_stack_config(env)
        assert config.workflows.settings["MLOPS_TRAINS"] == str(config.platform.trains).lower()
        for name in ("training", "monitor"):
            spec = render(get_pipeline(name), config.workflows)["spec"]
            suspended[(env, name)] = spec["suspend"]
            assert "suspend" not in spec["workflowSpec"]  # a run suspended at start: not it
    assert suspended == {
        ("dev", "training"): False,
        ("dev", "monitor"): False,
        ("staging", "training"): True,  # staging and prod serve candidates
        ("staging", "monitor"): False,
        ("prod", "training"): True,
        ("prod", "monitor"): False,
    }
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.staging.yaml").read_text())
    document["config"]["mlops-platform:workflows"]["settings"]["MLOPS_TRAINS"] = "true"
    with pytest.raises(PipelineError, match=r"MLOPS_TRAINS: set from platform\.trains"):
        parse_stack_config(document, "Pulumi.staging.yaml")
