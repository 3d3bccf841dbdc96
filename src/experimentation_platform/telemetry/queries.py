"""CloudWatch Logs Insights saved queries: the questions `ep logs` answers locally, asked of the
platform's log group in CloudWatch.

Data only, for the CloudFormation template (one `AWS::Logs::QueryDefinition` per query:
`Name` = `SavedQuery.name`, `QueryString` = `SavedQuery.query`, `LogGroupNames` = the platform's
log group). Logs Insights discovers the fields of our JSON lines by name (nested objects with
dots: `exception.type`), so the queries use the same field names the pipeline writes.

Queries that look for one request or one user carry a placeholder (`REQUEST_ID`, `USER_ID`)
the operator replaces in the console before running; `SavedQuery.render` does it in code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["FOLDER", "SAVED_QUERIES", "SavedQuery", "saved_query"]

FOLDER = "experimentation-platform"  # a "/" in a saved query's name makes a console folder


@dataclass(frozen=True)
class SavedQuery:
    name: str  # "experimentation-platform/request-by-id"
    title: str
    query: str
    placeholders: tuple[str, ...] = field(default=())
    local_equivalent: str = ""  # the `ep logs` command that asks the same question locally

    def render(self, **values: str) -> str:
        """The query with its placeholders replaced by quoted values (REQUEST_ID="4f2c...")."""
        missing = set(self.placeholders) - set(values)
        if missing:
            raise ValueError(f"{self.name} needs values for {', '.join(sorted(missing))}")
        text = self.query
        for key, value in values.items():
            # json.dumps quotes and escapes, so a value can never end the string literal.
            text = text.replace(f'"{key}"', json.dumps(value))
        return text


def _query(*commands: str) -> str:
    return "\n| ".join(commands)


SAVED_QUERIES: tuple[SavedQuery, ...] = (
    SavedQuery(
        name=f"{FOLDER}/request-by-id",
        title="One request, every line (replace REQUEST_ID)",
        query=_query(
            "fields @timestamp, level, logger, event, method, route, status, duration_ms, "
            "error_type, exception.type, exception.message",
            'filter request_id = "REQUEST_ID"',
            "sort @timestamp asc",
            "limit 1000",
        ),
        placeholders=("REQUEST_ID",),
        local_equivalent="ep logs --request-id REQUEST_ID",
    ),
    SavedQuery(
        name=f"{FOLDER}/slowest-routes",
        title="Slowest routes (p95 of request duration)",
        query=_query(
            'filter event = "request_completed"',
            "stats count(*) as requests, avg(duration_ms) as avg_ms, "
            "pct(duration_ms, 95) as p95_ms, pct(duration_ms, 99) as p99_ms, "
            "max(duration_ms) as max_ms by method, route",
            "sort p95_ms desc",
            "limit 25",
        ),
        local_equivalent="ep logs --event request_completed --where duration_ms>=500",
    ),
    SavedQuery(
        name=f"{FOLDER}/errors-by-type",
        title="Errors by type",
        query=_query(
            'filter level in ["error", "critical"]',
            "fields coalesce(exception.type, error_type, event) as error",
            "stats count(*) as errors, earliest(@timestamp) as first_seen, "
            "latest(@timestamp) as last_seen by error, logger",
            "sort errors desc",
            "limit 50",
        ),
        local_equivalent="ep logs --level error",
    ),
    SavedQuery(
        name=f"{FOLDER}/user-journey",
        title="One user's journey (replace USER_ID)",
        query=_query(
            "fields @timestamp, event, method, route, status, duration_ms, request_id, level",
            'filter user_id = "USER_ID"',
            "sort @timestamp asc",
            "limit 1000",
        ),
        placeholders=("USER_ID",),
        local_equivalent="ep logs --user-id USER_ID",
    ),
    SavedQuery(
        name=f"{FOLDER}/5xx-by-route",
        title="Server errors (5xx) by route",
        query=_query(
            'filter event = "request_completed" and status >= 500',
            "stats count(*) as server_errors, latest(@timestamp) as last_seen, "
            "latest(request_id) as example_request_id by method, route, status",
            "sort server_errors desc",
            "limit 50",
        ),
        local_equivalent="ep logs --event request_completed --where status>=500",
    ),
)


def saved_query(short_name: str) -> SavedQuery:
    """A saved query by its short name ("slowest-routes")."""
    for query in SAVED_QUERIES:
        if query.name == f"{FOLDER}/{short_name}":
            return query
    raise KeyError(short_name)
