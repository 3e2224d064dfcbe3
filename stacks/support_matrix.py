"""Supported versions: a checked-in, dated table, never the clock.

Every version the platform pins (EKS, RDS PostgreSQL, the Argo charts, the Python base image) is
checked against this table as of `AS_OF`, the date the table was last reviewed. A check never
reads today's date: the same commit gives the same verdict next year, and moving `AS_OF` (with
the dates re-verified) is a reviewed change like any other. docs/versions.md explains each pin.

The module also holds the AWS support tables the typed config checks against that are not
about dates: the RDS for PostgreSQL instance classes and S3's lifecycle transition minimums.

A release is *chosen-able* as of a day when its standard support has not ended and still runs
for at least the product's `Product.runway` after that day: long enough to plan the next
upgrade before the release starts billing extended support or drops out of support.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

AS_OF = date(2026, 11, 30)
"""The day the dates below were last checked. Checks are "as of" this day, never today."""


@dataclass(frozen=True)
class Release:
    """One version line of a product and the end of its standard support."""

    version: str
    """What the config pins: ``1.36`` (EKS), ``17`` (PostgreSQL major), ``10.1.1`` (a chart)."""
    standard_support_ends: date
    """Last day of standard (non-extended, free) support."""
    source: str
    """Where the date comes from."""
    estimated: bool = False
    """The date is derived from a published policy or a third party, not an official calendar."""
    note: str = ""
    """E.g. the application version a chart ships."""


@dataclass(frozen=True)
class Product:
    """A product the platform pins, its support policy and its releases."""

    key: str
    """The config key (or file) that pins it, for error messages: ``cluster.version``."""
    name: str
    policy: str
    """The support policy in one sentence (docs/versions.md repeats it)."""
    runway: timedelta
    """How long standard support must still run after the as-of day for a release to be chosen:
    the time an upgrade of this product takes to plan and roll out."""
    releases: tuple[Release, ...]

    def release(self, version: str) -> Release | None:
        """The release `version`, or None when the table does not know it."""
        return next((r for r in self.releases if r.version == version), None)

    def choosable(self, as_of: date = AS_OF) -> tuple[Release, ...]:
        """Releases in standard support for at least `runway` after `as_of`, oldest first."""
        return tuple(r for r in self.releases if r.standard_support_ends >= as_of + self.runway)

    def problem(self, version: str, as_of: date = AS_OF) -> str | None:
        """Why `version` may not be pinned as of `as_of` (one line naming the key), or None."""
        options = ", ".join(r.version for r in self.choosable(as_of)) or "none (update the table)"
        release = self.release(version)
        if release is None:
            known = ", ".join(r.version for r in self.releases)
            return (
                f"{self.key}: {version} is not in the support table (stacks/support_matrix.py "
                f"knows {known}); use one of {options}"
            )
        ends = release.standard_support_ends
        about = "~" if release.estimated else ""
        if ends < as_of:
            return (
                f"{self.key}: {version} left standard support on {about}{ends} "
                f"(as of {as_of}); use one of {options}"
            )
        if release not in self.choosable(as_of):
            return (
                f"{self.key}: {version} leaves standard support on {about}{ends}, less than "
                f"{self.runway.days} days after {as_of}; use one of {options}"
            )
        return None


EKS_CALENDAR = (
    "awsdocs/amazon-eks-user-guide latest/ug/versioning/kubernetes-versions.adoc (release calendar)"
)
EKS = Product(
    key="cluster.version",
    name="Amazon EKS (Kubernetes control plane)",
    policy=(
        "14 months of standard support from the EKS release, then 12 months of extended support "
        "at extra cost (the platform sets upgradePolicy STANDARD, so a cluster is upgraded "
        "instead of silently billed)"
    ),
    # A control-plane upgrade goes one minor at a time, after checking add-ons and rolling nodes.
    runway=timedelta(days=90),
    releases=(
        Release("1.31", date(2025, 11, 26), EKS_CALENDAR),
        Release("1.32", date(2026, 3, 23), EKS_CALENDAR),
        Release("1.33", date(2026, 7, 29), EKS_CALENDAR),
        Release("1.34", date(2026, 12, 2), EKS_CALENDAR),
        Release(
            "1.35",
            date(2027, 3, 27),
            "endoflife.date/amazon-eks; aws-samples.github.io/sample-apex-skills "
            "(cluster-lifecycle, verified 2026-04-24)",
        ),
        Release(
            "1.36",
            date(2027, 8, 2),
            "EKS release 2026-06-02 (docs.aws.amazon.com/eks/latest/userguide/"
            "kubernetes-versions-standard.html) + 14 months; date from "
            "devopsdreams.blogspot.com/2026/08/kubernetes-136-on-amazon-eks-upgrade.html, "
            "verify with `aws eks describe-cluster-versions --cluster-versions 1.36`",
            estimated=True,
        ),
    ),
)

RDS_PATTERN = (
    "RDS ends standard support on the last day of February after the community EOL "
    "(PostgreSQL 11: 2024-02-29, 12: 2025-02-28; AWS Database Blog upgrade-strategy posts); "
    "verify with `aws rds describe-db-major-engine-versions --engine postgres`"
)
POSTGRES = Product(
    key="database.engineVersion",
    name="Amazon RDS for PostgreSQL (major version)",
    policy=(
        "a major version is in RDS standard support until about the February after its "
        "community end of life (5 years after release), then in paid RDS Extended Support; "
        "minors are upgraded automatically (autoMinorVersionUpgrade), so only the major is pinned"
    ),
    # A major upgrade is a migration (snapshot, blue/green or downtime, MLflow schema check).
    runway=timedelta(days=180),
    releases=(
        Release("16", date(2029, 2, 28), RDS_PATTERN, estimated=True),
        Release("17", date(2030, 2, 28), RDS_PATTERN, estimated=True),
        Release(
            "18",
            date(2031, 2, 28),
            RDS_PATTERN + "; available on RDS per AWS Database Blog 'PostgreSQL 18 on Amazon "
            "Aurora and Amazon RDS: Performance enhancements'",
            estimated=True,
        ),
    ),
)

ARGO_CD_POLICY_SOURCE = (
    "argo-cd.readthedocs.io release-process-and-cadence (three newest minors get patches, a "
    "minor every quarter); chart -> app: argo-helm git tags"
)
ARGO_CD = Product(
    key="platform.argocdChartVersion",
    name="Argo CD (argo-helm chart argo-cd)",
    policy=(
        "the three most recent minor versions get patch releases; a new minor ships every "
        "quarter, so a minor is supported for about nine months"
    ),
    runway=timedelta(days=0),  # a chart bump is a version string, rendered and validated in CI
    releases=(
        Release(
            "9.4.18",
            date(2026, 11, 3),
            ARGO_CD_POLICY_SOURCE + "; out of support once v3.6 shipped (scheduled 2026-11-03)",
            estimated=True,
            note="Argo CD v3.3.6",
        ),
        Release(
            "10.1.1",
            date(2027, 2, 1),
            ARGO_CD_POLICY_SOURCE + "; v3.4 leaves support when v3.7 ships (about 2027-02)",
            estimated=True,
            note="Argo CD v3.4.4",
        ),
        Release(
            "10.3.3",
            date(2027, 5, 3),
            ARGO_CD_POLICY_SOURCE + "; v3.5 GA 2026-08-04, leaves support when v3.8 ships",
            estimated=True,
            note="Argo CD v3.5.1",
        ),
    ),
)

ARGO_WORKFLOWS_POLICY_SOURCE = (
    "argoproj/argo-workflows docs/releases.md (release branches for the two most recent "
    "minors, a minor about every 6 months); chart -> app: argo-helm git tags"
)
ARGO_WORKFLOWS = Product(
    key="platform.argoWorkflowsChartVersion",
    name="Argo Workflows (argo-helm chart argo-workflows)",
    policy=(
        "the two most recent minor versions get patch releases; a new minor ships about every "
        "six months, so a minor is supported for about a year"
    ),
    runway=timedelta(days=0),
    releases=(
        Release(
            "1.0.18",
            date(2027, 2, 1),
            ARGO_WORKFLOWS_POLICY_SOURCE + "; v4.0 leaves support when v4.2 ships (about 2027-02)",
            estimated=True,
            note="Argo Workflows v4.0.6",
        ),
    ),
)

PYTHON = Product(
    key="python base image",
    name="CPython (python:<version>-slim images)",
    policy="five years of support per minor (PEP 602): bug fixes for two, then security fixes",
    runway=timedelta(days=180),
    releases=(
        Release("3.11", date(2027, 10, 31), "PEP 664 (3.11 end of life 2027-10)", estimated=True),
        Release("3.12", date(2028, 10, 31), "PEP 693 (3.12 end of life 2028-10)", estimated=True),
        Release("3.13", date(2029, 10, 31), "PEP 719 (3.13 end of life 2029-10)", estimated=True),
    ),
)

PRODUCTS = (EKS, POSTGRES, ARGO_CD, ARGO_WORKFLOWS, PYTHON)
"""Every product in the table (docs/versions.md lists them in this order)."""


# ------------------------------------------------------------------ what AWS accepts (no dates)

RDS_POSTGRES_CLASSES: dict[str, tuple[str, ...]] = {
    # Source: Amazon RDS User Guide, "Supported DB engines for DB instance classes"
    # (docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Support.html)
    # and "DB instance class types"; Graviton m7g/r7g for PostgreSQL per usage.ai (third party).
    # Deliberately small: the classes this platform sizes for. Before adding one, check
    # `aws rds describe-orderable-db-instance-options --engine postgres --engine-version 17
    # --db-instance-class <class>`.
    "db.t3": ("micro", "small", "medium", "large", "xlarge", "2xlarge"),
    "db.t4g": ("micro", "small", "medium", "large", "xlarge", "2xlarge"),
    **{
        family: ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")
        for family in ("db.m6g", "db.m7g", "db.r6g", "db.r7g")
    },
}
"""RDS for PostgreSQL instance classes this platform accepts: family -> sizes."""
S3_TRANSITION_MIN_DAYS: dict[str, int] = {
    # Source: Amazon S3 API Reference, Transition (docs.aws.amazon.com/AmazonS3/latest/API/
    # API_Transition.html): days for STANDARD_IA or ONEZONE_IA must be 30 or more; the User
    # Guide's lifecycle-transition-general-considerations says the same.
    "STANDARD_IA": 30,
    "ONEZONE_IA": 30,
    "INTELLIGENT_TIERING": 0,
    "GLACIER_IR": 0,
    "GLACIER": 0,
    "DEEP_ARCHIVE": 0,
}
"""Storage class -> the fewest days after creation S3 accepts for a lifecycle transition."""
