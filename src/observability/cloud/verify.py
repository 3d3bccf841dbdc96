"""Check, through each service's own API, that every resource of the template exists as defined.

CloudFormation's CREATE_COMPLETE is not evidence: moto reports it for resource types it never
creates, and on AWS a resource can be deleted or edited behind the stack's back (drift).
`verify_stack` resolves the template against the parameters the stack was deployed with (or
those given), reads every resource through Logs, CloudWatch, SNS and IAM, and reports one line
per resource with ✓ or ✗ and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from observability.cloud.resources import (
    ClientFactory,
    active_resources,
    check_resource,
    stack_environment,
)

__all__ = ["ResourceCheck", "VerificationReport", "stack_parameters", "verify_stack"]


@dataclass(frozen=True)
class ResourceCheck:
    logical_id: str
    resource_type: str
    name: str
    ok: bool
    problems: tuple[str, ...] = ()
    detail: str = ""
    unverified: bool = False  # the endpoint could not answer (an API an emulator lacks)

    @property
    def mark(self) -> str:
        return "?" if self.unverified else "✓" if self.ok else "✗"


@dataclass
class VerificationReport:
    stack_name: str
    region: str
    checks: list[ResourceCheck] = field(default_factory=list)

    @property
    def failed(self) -> list[ResourceCheck]:
        """Missing or wrong resources (and unreadable ones: access denied)."""
        return [c for c in self.checks if not c.ok and not c.unverified]

    @property
    def unverified(self) -> list[ResourceCheck]:
        return [c for c in self.checks if c.unverified]

    def ok(self, *, strict: bool = False) -> bool:
        """No resource missing or wrong; with `strict`, also none left unchecked."""
        return bool(self.checks) and not self.failed and not (strict and self.unverified)

    def exit_code(self, *, strict: bool = False) -> int:
        return 0 if self.ok(strict=strict) else 1

    def render(self) -> str:
        """A plain-text table: one row per resource, ✓/✗, and a summary line."""
        rows = [("", "type", "logical id", "name", "state")]
        for c in self.checks:
            state = "; ".join(c.problems) if c.problems else c.detail
            rows.append((c.mark, c.resource_type, c.logical_id, c.name, state))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
            for row in rows
        ]
        bad, unknown = len(self.failed), len(self.unverified)
        summary = f"{len(self.checks)} resources in {self.region}: " + (
            "all as defined" if bad == 0 else f"{bad} missing or wrong"
        )
        if unknown:
            summary += f", {unknown} could not be checked (?) through this endpoint"
        return "\n".join([*lines, summary])


def stack_parameters(client_factory: ClientFactory, stack_name: str) -> dict[str, str]:
    """The parameter values the stack was last deployed with ({} if there is no stack)."""
    try:
        stacks = client_factory("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError:
        return {}
    if not stacks:
        return {}
    return {
        str(p["ParameterKey"]): str(p.get("ParameterValue", ""))
        for p in stacks[0].get("Parameters", [])
    }


def verify_stack(
    client_factory: ClientFactory,
    stack_name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, str] | None = None,
) -> VerificationReport:
    """Read every resource of `template` back. Parameter values: the template's defaults, then
    the deployed stack's, then `parameters`; so verify checks what deploy was asked for even
    when the stack itself is gone."""
    values = {**stack_parameters(client_factory, stack_name), **(parameters or {})}
    env = stack_environment(client_factory, template, values, stack_name)
    report = VerificationReport(stack_name=stack_name, region=env["AWS::Region"])
    for lid, kind, props in active_resources(template, env):
        try:
            state = check_resource(client_factory, kind, props, env.get(lid, ""))
        except (ClientError, BotoCoreError) as exc:
            # Access denied or unreachable: the resource is not shown to be right.
            reason = exc.response["Error"].get("Code") if isinstance(exc, ClientError) else None
            problem = f"could not read: {reason or type(exc).__name__}"
            report.checks.append(ResourceCheck(lid, kind, env.get(lid, lid), False, (problem,)))
            continue
        report.checks.append(
            ResourceCheck(
                lid,
                kind,
                state.name,
                state.ok,
                tuple(state.problems),
                state.detail,
                unverified=state.unverified,
            )
        )
    return report
