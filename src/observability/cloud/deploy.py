"""Create or update the monitoring stack through a change set, reporting as it goes.

`deploy_stack` never calls CreateStack/UpdateStack directly: a change set lets it say what will
change before anything does, and turns "nothing to change" into a clean answer instead of the
`ValidationError: No updates are to be performed` that UpdateStack raises. Progress is reported
as stack events arrive (oldest first, each once). What an emulator's CloudFormation skips is
filled in afterwards by `observability.cloud.resources.ensure_direct`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from observability.cloud.provisioning import render_json
from observability.cloud.resources import ClientFactory

__all__ = [
    "MAX_TEMPLATE_BODY_BYTES",
    "DeployError",
    "DeployResult",
    "ProgressCallback",
    "ResourceChange",
    "deploy_stack",
]

ProgressCallback = Callable[[str], None]

MAX_TEMPLATE_BODY_BYTES = 51_200  # CreateChangeSet TemplateBody limit; larger needs S3
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]


class DeployError(Exception):
    """The stack could not reach a complete state; the message names the failed resources."""


@dataclass(frozen=True)
class ResourceChange:
    action: str  # Add | Modify | Remove | Import | Dynamic
    logical_id: str
    resource_type: str
    replacement: str = ""  # True | False | Conditional, for Modify


@dataclass
class DeployResult:
    stack_name: str
    stack_id: str
    status: str
    changed: bool
    changes: list[ResourceChange] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _describe_stack(cfn: Any, stack_name: str) -> dict[str, Any] | None:
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError" and "does not exist" in _message(exc):
            return None
        raise
    return dict(stacks[0]) if stacks else None


def _wait_change_set(
    cfn: Any, change_set_id: str, deadline: float, poll_s: float
) -> dict[str, Any]:
    while True:
        described = cfn.describe_change_set(ChangeSetName=change_set_id)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED", "DELETE_COMPLETE"):
            changes = list(described.get("Changes", []))
            token = described.get("NextToken")
            while token:  # bounded by the change set's size
                page = cfn.describe_change_set(ChangeSetName=change_set_id, NextToken=token)
                changes += page.get("Changes", [])
                token = page.get("NextToken")
            return {**described, "Changes": changes}
        if time.monotonic() > deadline:
            raise DeployError(f"change set still {described['Status']} at the deadline")
        time.sleep(poll_s)


def _changes(described: Mapping[str, Any]) -> list[ResourceChange]:
    result = []
    for change in described.get("Changes", []):
        rc = change.get("ResourceChange", {})
        result.append(
            ResourceChange(
                action=str(rc.get("Action", "")),
                logical_id=str(rc.get("LogicalResourceId", "")),
                resource_type=str(rc.get("ResourceType", "")),
                replacement=str(rc.get("Replacement", "")),
            )
        )
    return result


def _format_event(event: Mapping[str, Any]) -> str:
    reason = event.get("ResourceStatusReason")
    text = f"{event['ResourceStatus']:<28} {event['ResourceType']:<32} {event['LogicalResourceId']}"
    return f"{text}  ({reason})" if reason else text


def _event_ids(cfn: Any, stack_name: str) -> set[str]:
    """Events already there (newest page): not news. Compared by id, not by time, so a skewed
    local clock cannot hide an event."""
    try:
        events = cfn.describe_stack_events(StackName=stack_name).get("StackEvents", [])
    except ClientError:
        return set()
    return {str(e["EventId"]) for e in events}


def _wait_stack(
    cfn: Any,
    stack_name: str,
    seen: set[str],
    on_progress: ProgressCallback,
    deadline: float,
    poll_s: float,
) -> tuple[dict[str, Any], list[str]]:
    """Poll until the stack leaves *_IN_PROGRESS; report each new event once, oldest first."""
    failures: list[str] = []
    while True:
        stack = _describe_stack(cfn, stack_name)
        if stack is None:  # deleted: nothing more to report
            return {}, failures
        events = cfn.describe_stack_events(StackName=stack_name).get("StackEvents", [])
        fresh = [e for e in events if e["EventId"] not in seen]
        for event in reversed(fresh):  # the API lists newest first
            seen.add(event["EventId"])
            on_progress(_format_event(event))
            if str(event["ResourceStatus"]).endswith("FAILED"):
                failures.append(
                    f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', '?')}"
                )
        status = str(stack["StackStatus"])
        if not status.endswith("_IN_PROGRESS"):
            return stack, failures
        if time.monotonic() > deadline:
            raise DeployError(f"stack {stack_name} still {status} at the deadline")
        time.sleep(poll_s)


def _parameter_list(
    template: Mapping[str, Any], parameters: Mapping[str, str], existing: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    declared = template.get("Parameters", {})
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise DeployError(f"unknown template parameters: {', '.join(unknown)}")
    previous = {p["ParameterKey"] for p in (existing or {}).get("Parameters", [])}
    result: list[dict[str, Any]] = []
    for name in declared:
        if name in parameters:
            result.append({"ParameterKey": name, "ParameterValue": str(parameters[name])})
        elif name in previous:
            # Not given now: keep what the last deploy set (endpoints need not be repeated).
            result.append({"ParameterKey": name, "UsePreviousValue": True})
    return result


def deploy_stack(
    client_factory: ClientFactory,
    stack_name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, str],
    *,
    on_progress: ProgressCallback = lambda _line: None,
    timeout_s: float = 1800.0,
    poll_s: float = 2.0,
    template_bucket: str | None = None,
) -> DeployResult:
    """Create or update `stack_name` to `template` through a change set.

    Parameters not given keep their previous value on update (their default on create).
    Returns `changed=False` (and executes nothing) when CloudFormation sees no change.
    Raises DeployError naming the failed resources when the stack rolls back.
    With `template_bucket`, the template is uploaded there and passed by URL (needed past the
    51,200-byte TemplateBody limit; S3 allows 1 MB).
    """
    cfn = client_factory("cloudformation")
    body = render_json(template)
    source: dict[str, str] = {"TemplateBody": body}
    if template_bucket:
        source = {"TemplateURL": _upload(client_factory, template_bucket, stack_name, body)}
    elif len(body.encode()) > MAX_TEMPLATE_BODY_BYTES:
        raise DeployError(
            f"template is {len(body.encode())} bytes, over the {MAX_TEMPLATE_BODY_BYTES}-byte "
            "TemplateBody limit: pass a bucket to upload it to (--template-bucket)"
        )
    deadline = time.monotonic() + timeout_s
    existing = _describe_stack(cfn, stack_name)
    if existing and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        # A stack whose creation failed cannot be updated, only deleted and created again.
        on_progress(f"stack {stack_name} is ROLLBACK_COMPLETE (failed create): deleting it")
        cfn.delete_stack(StackName=stack_name)
        _wait_stack(cfn, stack_name, _event_ids(cfn, stack_name), on_progress, deadline, poll_s)
        existing = None
    creating = existing is None or existing["StackStatus"] == "REVIEW_IN_PROGRESS"
    unchanged = DeployResult(
        stack_name=stack_name,
        stack_id=str((existing or {}).get("StackId", "")),
        status=str((existing or {}).get("StackStatus", "")),
        changed=False,
        outputs=_outputs(existing or {}),
    )
    try:
        change_set = cfn.create_change_set(
            StackName=stack_name,
            ChangeSetName=f"ep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            ChangeSetType="CREATE" if creating else "UPDATE",
            **source,
            Parameters=_parameter_list(template, parameters, None if creating else existing),
            Capabilities=_CAPABILITIES,
            Description="ep cloud deploy",
        )
    except ClientError as exc:
        # Some endpoints (moto, for one) refuse an empty change set at once instead of
        # creating it and marking it FAILED.
        if _code(exc) == "ValidationError" and any(m in _message(exc) for m in _NO_CHANGES):
            on_progress(f"stack {stack_name}: no changes")
            return unchanged
        raise
    described = _wait_change_set(cfn, change_set["Id"], deadline, poll_s)
    if described["Status"] == "FAILED":
        reason = str(described.get("StatusReason", ""))
        cfn.delete_change_set(ChangeSetName=change_set["Id"])
        if any(marker in reason for marker in _NO_CHANGES):
            on_progress(f"stack {stack_name}: no changes")
            return unchanged
        raise DeployError(f"change set failed: {reason}")
    changes = _changes(described)
    verb = "create" if creating else "update"
    on_progress(f"stack {stack_name}: {verb}, {len(changes)} resource change(s)")
    for change in changes:
        replace = " (replacement)" if change.replacement == "True" else ""
        on_progress(f"  {change.action:<7} {change.resource_type:<32} {change.logical_id}{replace}")
    seen = _event_ids(cfn, stack_name)
    try:
        cfn.execute_change_set(ChangeSetName=change_set["Id"])
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        # moto executes synchronously and can answer a resource's own error (a log group that
        # already exists) in the wrong protocol; AWS reports it as a FAILED stack event.
        raise DeployError(f"executing the change set failed: {_short(exc)}") from exc
    stack, failures = _wait_stack(cfn, stack_name, seen, on_progress, deadline, poll_s)
    status = str(stack.get("StackStatus", "DELETE_COMPLETE"))
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        detail = "; ".join(failures) or str(stack.get("StackStatusReason", ""))
        raise DeployError(f"stack {stack_name} ended {status}: {detail}")
    return DeployResult(
        stack_name=stack_name,
        stack_id=str(stack["StackId"]),
        status=status,
        changed=True,
        changes=changes,
        outputs=_outputs(stack),
    )


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _upload(client_factory: ClientFactory, bucket: str, stack_name: str, body: str) -> str:
    s3 = client_factory("s3")
    key = f"ep-cloud/{stack_name}/{hashlib.sha256(body.encode()).hexdigest()[:16]}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    region = str(s3.meta.region_name)
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{bucket}.s3.{region}.{suffix}/{key}"


def _outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in stack.get("Outputs", [])}
