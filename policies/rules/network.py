"""Security groups: nothing world-open but the web ports, never SSH, RDP or a database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from policies.rules.base import WORLD, Report, as_list, get, rule, who

DATABASE_AND_SSH_PORTS = {
    22: "SSH",
    3389: "RDP",
    5432: "PostgreSQL",
    3306: "MySQL",
    1433: "SQL Server",
    1521: "Oracle",
    27017: "MongoDB",
    6379: "Redis",
}
WEB_PORTS = {80, 443}


def _ingress_rules(args: Any) -> Iterator[tuple[int, int, str, list[str]]]:
    """(from, to, protocol, world CIDRs) of every ingress rule a resource opens."""
    p, t = args.props, args.resource_type
    if t == "aws:ec2/securityGroup:SecurityGroup":
        rules = as_list(get(p, "ingress"))
    elif t == "aws:ec2/securityGroupRule:SecurityGroupRule" and get(p, "type") == "ingress":
        rules = [p]
    elif t == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        rules = [
            {
                "fromPort": get(p, "fromPort"),
                "toPort": get(p, "toPort"),
                "protocol": get(p, "ipProtocol"),
                "cidrBlocks": as_list(get(p, "cidrIpv4")),
                "ipv6CidrBlocks": as_list(get(p, "cidrIpv6")),
            }
        ]
    else:
        return
    for ingress in rules:
        world = [
            c
            for c in as_list(get(ingress, "cidrBlocks")) + as_list(get(ingress, "ipv6CidrBlocks"))
            if c in WORLD
        ]
        protocol = str(get(ingress, "protocol", default="tcp"))
        low, high = get(ingress, "fromPort", default=0), get(ingress, "toPort", default=65535)
        if protocol == "-1":
            low, high = 0, 65535
        yield int(low or 0), int(high if high is not None else 65535), protocol, world


@rule("sg-no-world-database-ssh", "No world-open SSH/RDP/database ports", "mandatory")
def sg_no_world_database_or_ssh(args: Any, report: Report) -> None:
    """No ingress from 0.0.0.0/0 or ::/0 on SSH, RDP or database ports."""
    for low, high, _, world in _ingress_rules(args):
        exposed = [
            f"{port} ({name})"
            for port, name in DATABASE_AND_SSH_PORTS.items()
            if world and low <= port <= high
        ]
        if exposed:
            report(f"{who(args)}: ingress from {', '.join(world)} on {', '.join(exposed)}")


@rule("sg-world-only-web", "World-open ingress only on 80/443", "mandatory")
def sg_world_only_web(args: Any, report: Report) -> None:
    """Any other world-open ingress only on 80/443."""
    for low, high, _, world in _ingress_rules(args):
        if not world or any(low <= port <= high for port in DATABASE_AND_SSH_PORTS):
            continue  # the database/SSH rule reports those
        if not (low == high and low in WEB_PORTS):
            report(
                f"{who(args)}: ingress from {', '.join(world)} on ports {low}-{high}; "
                "only 80/443 may be world-open"
            )
