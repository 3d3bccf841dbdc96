"""AWS SNS: publish each notification to a topic (one topic, or one per severity).

The message is the plain-text rendering (readable in an e-mail or SMS subscription); the
message attributes carry severity, status, source and the dedup key so a Lambda or SQS
subscriber can filter without parsing text. botocore's own retries are turned off: the
dispatcher retries, with a bound on total time, and two retry loops would multiply.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from observability.alerting.notifiers.base import (
    Notification,
    NotifierError,
    Severity,
    plain_text,
    stable_hash,
    truncate,
)

__all__ = ["SnsNotifier", "sns_subject"]

_SUBJECT_LIMIT = 99  # SNS: "less than 100 characters", no line breaks or control characters
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSThrottling",
    }
)


def sns_subject(notification: Notification) -> str:
    """An SNS-safe subject: printable ASCII, one line, under 100 characters."""
    raw = f"[{notification.severity.upper()}][{notification.status.upper()}] {notification.title}"
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    printable = "".join(ch if ch.isprintable() else " " for ch in ascii_text)
    return truncate(" ".join(printable.split()), _SUBJECT_LIMIT).replace("…", ".")


class SnsNotifier:
    """Publishes notifications to SNS topics with boto3."""

    def __init__(
        self,
        topic_arn: str | Mapping[Severity, str],
        *,
        name: str = "sns",
        region_name: str | None = None,
        endpoint_url: str | None = None,
        timeout: float = 10.0,
        client: Any | None = None,
    ) -> None:
        if not topic_arn:
            raise ValueError("topic_arn must name a topic (or map severities to topics)")
        self.name = name
        self._topics: str | dict[Severity, str] = (
            topic_arn if isinstance(topic_arn, str) else dict(topic_arn)
        )
        self._client = client or boto3.client(
            "sns",
            region_name=region_name,
            endpoint_url=endpoint_url,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"total_max_attempts": 1, "mode": "standard"},
            ),
        )

    def __repr__(self) -> str:
        return f"SnsNotifier(name={self.name!r}, topics={self._topics!r})"

    def topic_for(self, notification: Notification) -> str:
        if isinstance(self._topics, str):
            return self._topics
        topic = self._topics.get(notification.severity)
        if topic is None:
            raise NotifierError(
                f"{self.name}: no topic configured for severity {notification.severity!r}",
                retryable=False,
            )
        return topic

    def build_publish(self, notification: Notification) -> dict[str, Any]:
        """The keyword arguments of `sns.publish` for `notification`."""

        def attribute(value: str) -> dict[str, str]:
            return {"DataType": "String", "StringValue": value}

        return {
            "TopicArn": self.topic_for(notification),
            "Subject": sns_subject(notification),
            "Message": plain_text(notification),
            "MessageAttributes": {
                "severity": attribute(notification.severity),
                "status": attribute(notification.status),
                "source": attribute(notification.source or "alert"),
                "dedup_key": attribute(stable_hash(notification.key)),
            },
        }

    def send(self, notification: Notification) -> None:
        request = self.build_publish(notification)
        try:
            self._client.publish(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            retryable = code in _RETRYABLE_CODES or status >= 500
            text = f"{self.name}: {code}: {error.get('Message', '')}".rstrip(": ")
            raise NotifierError(text, retryable=retryable, status_code=status or None) from None
        except (BotoConnectionError, HTTPClientError) as exc:  # refused, reset, timed out
            raise NotifierError(f"{self.name}: {type(exc).__name__}", retryable=True) from None
        except BotoCoreError as exc:  # no credentials, bad parameters: trying again won't help
            raise NotifierError(
                f"{self.name}: {type(exc).__name__}: {exc}", retryable=False
            ) from None
