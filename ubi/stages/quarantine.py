"""Dead-letter records that always fit Kafka: what the bridge refuses at the door and what the scorer quarantines.

A record carries the payload's full size and SHA-256 and, only where ``privacy.dlq_keep_payload`` says so, at most
``MAX_PAYLOAD_KEPT`` bytes of the payload itself (base64, decimal numbers cut to ``privacy.position_decimals``), so
an oversize or hostile message is identified and counted but can never make its own dead letter too large for the
topic (Kafka's default 1 MB record limit) and block the messages behind it. Free-text fields from the wire are cut
too.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict

from scoring.trips import Quarantined

MAX_PAYLOAD_KEPT = 64 * 1024  # bytes of the original payload kept (base64 makes it 4/3 of that)
MAX_TEXT = 512  # characters kept of a detail or topic string


def cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit} more]"


def payload_fields(payload: bytes, keep: bool = True, decimals: int = 2) -> dict:
    """Size and SHA-256 of the whole payload; the payload itself (cut, numbers coarsened to ``decimals`` fraction
    digits so no precise position is kept) only when ``keep`` (``privacy.dlq_keep_payload``, off by default)."""
    from ubi.adapters.privacy import coarsen_numbers

    kept = payload[:MAX_PAYLOAD_KEPT]
    fields = {
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_truncated": len(kept) < len(payload),
        "payload_kept": keep,
    }
    if keep:
        fields["payload_b64"] = base64.b64encode(coarsen_numbers(kept, decimals)).decode()
    return fields


def dead_letter(
    reason: str,
    detail: str,
    mqtt_topic: str,
    received_ms: int,
    payload: bytes,
    keep_payload: bool = False,
    decimals: int = 2,
) -> bytes:
    """The bridge's dead letter for one MQTT message (at most ~90 KB whatever came in)."""
    body = {
        "reason": reason,
        "detail": cut(detail),
        "mqtt_topic": cut(mqtt_topic),
        "received_ms": received_ms,
        "source": "bridge",
        **payload_fields(payload, keep_payload, decimals),
    }
    return json.dumps(body).encode()


def quarantine_record(q: Quarantined) -> bytes:
    """The scorer's dead letter for a trip or a message it refuses."""
    body = asdict(q)
    body["seqs"] = list(q.seqs)[:1000]
    body["detail"] = cut(q.detail)
    body["source"] = "scorer"
    return json.dumps(body).encode()
