"""Session state on DynamoDB (AWS mode): conditional writes make transitions atomic.

Table layout (one table, ``Settings.sessions_table``, partition key ``pk``):

- ``session#<id>``: the session. ``state`` and ``created_at`` are top-level
  attributes (indexed by the ``by_state`` GSI for listing live sessions);
  ``data`` holds the whole :class:`stores.base.Session` as JSON; ``version``
  counts writes.
- ``streamkey#<key>``: points a stream key at its session. Written in the same
  transaction as the session with ``attribute_not_exists``, so a stream key
  can never belong to two sessions (a GSI could not enforce that).

A transition reads the item, checks the state, and writes with
``ConditionExpression: version = :read_version``. If two coordinators race to
end a session, exactly one write passes; the loser re-reads, finds the state
no longer expected, and gets :class:`stores.base.StateConflict`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

from contracts.settings import Settings
from stores.base import Session, SessionNotFound, SessionState, StateConflict

log = logging.getLogger(__name__)

STATE_INDEX = "by_state"
_SESSION = "session#"
_STREAM_KEY = "streamkey#"


def dynamodb_client(settings: Settings) -> Any:
    """A boto3 DynamoDB client for ``settings`` (endpoint override for moto/LocalStack)."""
    import boto3

    return boto3.client(
        "dynamodb",
        region_name=settings.aws_region,
        endpoint_url=settings.dynamodb_endpoint or None,
    )


def create_sessions_table(client: Any, table: str) -> None:
    """Create the sessions table with its state index if it does not exist (idempotent)."""
    try:
        client.describe_table(TableName=table)
        return
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "state", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": STATE_INDEX,
                "KeySchema": [
                    {"AttributeName": "state", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    client.get_waiter("table_exists").wait(TableName=table)
    log.info("sessions table created", extra={"table": table})


def _dump(session: Session) -> str:
    data = {f.name: getattr(session, f.name) for f in fields(session)}
    data["state"] = session.state.value
    return json.dumps(data)


def _load(item: dict[str, Any]) -> Session:
    raw = json.loads(item["data"]["S"])
    raw["state"] = SessionState(raw["state"])
    return Session(**raw)


class DynamoSessionStore:
    """:class:`stores.base.SessionStore` on DynamoDB with conditional transitions."""

    def __init__(self, source: Settings | Any, table: str | None = None) -> None:
        if isinstance(source, Settings):
            self.client = dynamodb_client(source)
            table = table or source.sessions_table
        else:
            self.client = source
        if not table:
            raise ValueError("DynamoSessionStore needs a table name")
        self.table = table

    def create_table(self) -> None:
        """Create the table if missing (tests, `localstack/up`)."""
        create_sessions_table(self.client, self.table)

    def _item(self, session: Session, version: int) -> dict[str, Any]:
        return {
            "pk": {"S": _SESSION + session.session_id},
            "kind": {"S": "session"},
            "state": {"S": session.state.value},
            "created_at": {"N": repr(float(session.created_at))},
            "stream_key": {"S": session.stream_key},
            "version": {"N": str(version)},
            "data": {"S": _dump(session)},
        }

    def create(self, session: Session) -> None:
        """See :meth:`stores.base.SessionStore.create`."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._item(session, 1),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": _STREAM_KEY + session.stream_key},
                                "kind": {"S": "stream_key"},
                                "session_id": {"S": session.session_id},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise StateConflict(f"session {session.session_id} already exists") from None
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise StateConflict("stream key already belongs to another session") from None
            raise
        log.info("session created", extra={"session": session.session_id, "state": session.state.value})

    def _get_item(self, session_id: str) -> dict[str, Any]:
        resp = self.client.get_item(TableName=self.table, Key={"pk": {"S": _SESSION + session_id}}, ConsistentRead=True)
        item = resp.get("Item")
        if item is None:
            raise SessionNotFound(session_id)
        return dict(item)

    def get(self, session_id: str) -> Session:
        """See :meth:`stores.base.SessionStore.get`."""
        return _load(self._get_item(session_id))

    def transition(
        self,
        session_id: str,
        expected: Sequence[SessionState],
        new: SessionState,
        **changes: Any,
    ) -> Session:
        """See :meth:`stores.base.SessionStore.transition` (compare-and-set on ``version``)."""
        if "stream_key" in changes or "session_id" in changes:
            raise ValueError("a transition cannot change the session id or stream key")
        while True:
            item = self._get_item(session_id)
            current = _load(item)
            if current.state not in expected:
                raise StateConflict(
                    f"session {session_id} is {current.state.value}, expected " + " or ".join(s.value for s in expected)
                )
            version = int(item["version"]["N"])
            updated = replace(current, state=new, updated_at=time.time(), **changes)
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item=self._item(updated, version + 1),
                    ConditionExpression="#v = :v",
                    ExpressionAttributeNames={"#v": "version"},
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                # Someone else wrote in between: re-read and re-check the state.
                log.info("session transition raced; re-checking", extra={"session": session_id, "to": new.value})
                continue
            log.info("session transition", extra={"session": session_id, "from": current.state.value, "to": new.value})
            return updated

    def find_by_stream_key(self, stream_key: str) -> Session | None:
        """See :meth:`stores.base.SessionStore.find_by_stream_key`."""
        resp = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": _STREAM_KEY + stream_key}}, ConsistentRead=True
        )
        item = resp.get("Item")
        if item is None:
            return None
        try:
            return self.get(item["session_id"]["S"])
        except SessionNotFound:
            return None

    def _all_items(self, operation: str, **request: Any) -> list[dict[str, Any]]:
        """Every item of a paginated ``scan`` or ``query`` of the table."""
        items: list[dict[str, Any]] = []
        for page in self.client.get_paginator(operation).paginate(TableName=self.table, **request):
            items.extend(page.get("Items", []))
        return items

    def list(self, states: Sequence[SessionState] | None = None) -> list[Session]:
        """See :meth:`stores.base.SessionStore.list` (oldest first)."""
        if states is None:
            items = self._all_items(
                "scan",
                FilterExpression="#k = :s",
                ExpressionAttributeNames={"#k": "kind"},
                ExpressionAttributeValues={":s": {"S": "session"}},
            )
        else:
            items = [
                item
                for state in states
                for item in self._all_items(
                    "query",
                    IndexName=STATE_INDEX,
                    KeyConditionExpression="#s = :s",
                    ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={":s": {"S": state.value}},
                )
            ]
        sessions = [_load(i) for i in items]
        return sorted(sessions, key=lambda s: (s.created_at, s.session_id))
