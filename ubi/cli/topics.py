"""`ubi topics check|apply`: compare the cluster's topics with their one declaration (ubi/adapters/topics.py).

check  prints every declared topic with what differs; exit 1 if anything does, 0 if all is as declared.
apply  creates missing topics, adds partitions, reassigns replicas and sets settings; prints what it did and what it
       cannot do (lowering partitions); exit 1 if anything still differs.
"""

from __future__ import annotations

import argparse

from ubi.common.config import get_config


def _print(declared, diffs) -> None:
    by_topic: dict[str, list] = {}
    for d in diffs:
        by_topic.setdefault(d.topic, []).append(d)
    width = max(len(s.name) for s in declared)
    for s in declared:
        settings = " ".join(f"{k}={v}" for k, v in sorted(s.configs.items()))
        if s.name not in by_topic:
            print(f"{s.name:<{width}}  ok: {s.partitions} partitions, replication factor {s.replication}, {settings}")
            continue
        for i, d in enumerate(by_topic[s.name]):
            label = s.name if i == 0 else ""
            tail = "" if d.fixable else "  [apply cannot fix this]"
            print(f"{label:<{width}}  DIFFERS: {d.text}{tail}")


def _run(args) -> int:
    from ubi.adapters import topics
    from ubi.adapters.kafka import admin_client

    cfg = get_config()
    admin = admin_client(cfg.kafka)
    try:
        if args.action == "check":
            declared, diffs = topics.check(cfg, admin)
            _print(declared, diffs)
            print(f"{len(diffs)} difference(s) from the declaration on {cfg.kafka.bootstrap}")
            return 1 if diffs else 0
        done, left = topics.apply(cfg, admin)
        for line in done:
            print(f"applied: {line}")
        if not done:
            print("applied: nothing (all that apply can change was already as declared)")
        _print(topics.declared_topics(cfg), left)
        print(f"{len(left)} difference(s) left on {cfg.kafka.bootstrap}")
        return 1 if left else 0
    finally:
        admin.close()


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("topics", help="check or apply the declared Kafka topics (partitions, replication, retention)")
    s.add_argument("action", choices=["check", "apply"])
    s.set_defaults(func=_run)
