"""`ubi`: one command line for the platform. `ubi --help` lists the subcommands; each has its own --help."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

from ubi.common.config import get_config
from ubi.common.errors import ConfigError, UBIError


def _stack(args) -> int:
    from ubi.ops.stack import Stack

    stack = Stack(get_config())
    if args.brokers is not None and args.action != "up":
        raise ConfigError("--brokers goes with `ubi stack up` only")
    up = lambda: stack.up(brokers=args.brokers)  # noqa: E731
    result = {"up": up, "down": stack.down, "status": stack.status, "secrets": stack.secrets}[args.action]()
    for name, state in result.items():
        print(f"{name:<10} {state}")
    return 0


def _devices(args) -> int:
    from ubi.ops.stack import Stack

    stack = Stack(get_config())
    creds = stack.credentials()
    if args.action == "add":
        for vehicle, password in creds.add(args.vehicles).items():
            print(f"{vehicle} {password}")
        print("# passwords are shown once; the broker stores only their hashes", file=sys.stderr)
    elif args.action == "revoke":
        gone = creds.revoke(args.vehicles)
        print(f"revoked: {' '.join(gone) or '(none)'}")
    else:
        print("\n".join(u for u in creds.users()))
    stack.mosquitto_reload()
    return 0


def simulate_start(start: date | None, days: int, offline: bool) -> date:
    """The first simulated day: by default ``days`` before today, so the fleet ends yesterday. A live run whose days
    reach past today would send future timestamps, which the bridge dead-letters as time_travel: refused here."""
    today = date.today()
    if start is None:
        return today - timedelta(days=days)
    if not offline and start + timedelta(days=days) > today:
        raise ConfigError(
            f"--start {start} with --days {days} runs past today: devices would send future "
            f"timestamps (dead-lettered as time_travel); use --start {today - timedelta(days=days)} "
            "or earlier, or --offline"
        )
    return start


def _simulate(args) -> int:
    from simulator.fleet import FleetSpec
    from simulator.player import play_fleet

    cfg = get_config()
    start = simulate_start(args.start, args.days, args.offline)
    spec = FleetSpec(
        vehicles=args.vehicles,
        days=args.days,
        seed=args.seed,
        start=start,
        batch_s=args.batch_s,
        sensor_faults=args.faults,
        motion_only_share=args.motion_only_share,
        device_mix=args.device_mix,
        motion=args.motion or ("calibrated" if args.device_mix else "legacy"),
    )
    out = args.out or cfg.home / "sim" / f"seed{args.seed}"
    if args.offline:
        from simulator.offline import write_offline
        from simulator.run import write_truth

        trips = write_truth(spec, out)
        gps, imu, n = write_offline(spec, trips, out)
        print(
            f"wrote {n:,} samples of {sum(map(len, trips.values()))} trips to {gps} and {imu}; "
            f"ground truth and policies in {out}"
        )
        return 0
    sent, trips = play_fleet(cfg, spec, out, speedup=args.speedup)
    print(f"published {sent} messages for {sum(map(len, trips.values()))} trips; ground truth in {out}")
    return 0


def _bridge(args) -> int:
    from ubi.ops.stack import Stack
    from ubi.stages.bridge import Bridge

    cfg = get_config()
    if args.metrics_port is not None:
        cfg = replace(cfg, ingest=replace(cfg.ingest, metrics_port=args.metrics_port))
    password = Stack(cfg).credentials().password(cfg.mqtt.bridge_user)
    Bridge(cfg, password, client_id=args.client_id).run()
    return 0


def _score(args) -> int:
    from ubi.stages.score import run_score

    cfg = get_config()
    if args.metrics_port is not None:
        cfg = replace(cfg, ingest=replace(cfg.ingest, scorer_metrics_port=args.metrics_port))
    run_score(cfg, client_id=args.client_id)
    return 0


def _pipeline(args) -> int:
    from ubi.ops.supervisor import Supervisor

    cfg = get_config()

    def port(base: int, i: int) -> str:  # each process its own /metrics: the configured port + 10 per extra one
        return str(base + 10 * i if base else 0)

    ing = cfg.ingest
    stages = [
        ("bridge", ("--client-id", f"ubi-bridge-{i + 1}", "--metrics-port", port(ing.metrics_port, i)))
        for i in range(args.bridges)
    ]
    stages += [
        ("score", ("--client-id", f"ubi-score-{i + 1}", "--metrics-port", port(ing.scorer_metrics_port, i)))
        for i in range(args.scorers)
    ]
    stages.append(("store", ("--client-id", "ubi-store-1")))
    restarts = Supervisor(cfg, stages).run()
    print(f"pipeline stopped; restarts: {restarts}")
    return 0


def _store(args) -> int:
    from ubi.stages.store import run_store

    cfg = get_config()
    if args.metrics_port is not None:
        cfg = replace(cfg, ingest=replace(cfg.ingest, store_metrics_port=args.metrics_port))
    run_store(cfg, client_id=args.client_id)
    return 0


def _policies(args) -> int:
    from ubi.adapters import duckdb_store as store
    from ubi.adapters.duckdb_store import load_policies

    con = store.connect(get_config().db_path)
    print(f"loaded {load_policies(con, args.file)} policies")
    return 0


def _price(args) -> int:
    from ubi.cli.price import price

    s = price(get_config(), args.month, args.rulebook)  # progress on stderr, figures in <home>/metrics/pricing.prom
    print(json.dumps(s.__dict__, default=str, indent=1))
    return 0


def _rulebook(args) -> int:
    from pricing.rulebook import load_rulebook

    rb = load_rulebook(args.file)
    print(f"ok: {args.file} version {rb.version}, {len(rb.factors)} factors, sha256 {rb.sha256[:12]}")
    return 0


def _sql(args) -> int:
    from ubi.cli.privacy import sql_command  # audited; --actuary: pseudonymised tables only

    return sql_command(args)


def _demo(args) -> int:
    from ubi.cli.demo import run_demo

    return run_demo(
        get_config(), args.vehicles, args.days, args.seed, faults=args.faults, motion_only_share=args.motion_only_share
    )


def _actuary(args) -> int:
    from ubi.adapters import audit
    from ubi.cli import actuary

    detail = {k: str(v) for k, v in vars(args).items() if k != "func" and v is not None}
    audit.record(None, f"actuary_{args.action}", None, detail)  # reports and loads are exports and writes
    if args.action == "simulate-book":
        from simulator.claims import make_book, write_book

        out = args.book or get_config().home / "sim" / "book"
        book = make_book(args.policies, args.seed)
        write_book(book, out)
        print(
            f"{args.policies} policies, {book['claims'].height} claims, "
            f"{book['exposure_periods']['exposure_years'].sum():.0f} policy-years -> {out}"
        )
        return 0
    if args.action == "load-book":
        from ubi.cli import book

        return book.load_book_cmd(get_config(), args)
    if args.action in ("fit", "fairness") and args.book is not None:
        from ubi.cli import book

        cmd = book.fit_book_cmd if args.action == "fit" else book.fairness_book_cmd
        return cmd(get_config(), argparse.Namespace(**{**vars(args), "book": str(args.book)}))
    return {"whatif": actuary.whatif_cmd, "fit": actuary.fit_cmd, "fairness": actuary.fairness_cmd}[args.action](
        get_config(), args
    )


def _score_file(args) -> int:
    from ubi.stages import score_file

    return score_file.main(get_config(), args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ubi", description=__doc__)
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("demo", help="set up and run the whole pipeline end to end, then print a summary")
    s.add_argument("--vehicles", type=int, default=20)
    s.add_argument("--days", type=int, default=10)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--faults", action="store_true", help="simulate GPS glitches, tunnels and clock drift")
    s.add_argument(
        "--motion-only-share",
        type=float,
        default=0.2,
        help="share of devices that send no ignition events (trips cut by motion)",
    )
    s.set_defaults(func=_demo)

    s = sub.add_parser("stack", help="start, stop or inspect the local Mosquitto and Kafka services")
    s.add_argument("action", choices=["up", "down", "status", "secrets"])
    s.add_argument(
        "--brokers", type=int, default=None, help="1 = one Kafka broker; 3 = a replicated KRaft cluster "
        "(default: as many as kafka.bootstrap names, one unless this home runs a cluster; docs/kafka-cluster.md)",
    )  # fmt: skip
    s.set_defaults(func=_stack)

    s = sub.add_parser("devices", help="enrol or revoke per-device MQTT credentials (stored hashed)")
    s.add_argument("action", choices=["add", "revoke", "list"])
    s.add_argument("vehicles", nargs="*")
    s.set_defaults(func=_devices)

    s = sub.add_parser("simulate", help="publish a simulated fleet's telemetry over MQTT, with ground truth")
    s.add_argument("--vehicles", type=int, default=20)
    s.add_argument("--days", type=int, default=7)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument(
        "--start",
        type=date.fromisoformat,
        default=None,
        help="first simulated day (default: --days before today, so no message is in the future)",
    )
    s.add_argument("--speedup", type=float, default=0.0, help="accelerated clock factor; 0 = as fast as possible")
    s.add_argument("--batch-s", type=int, default=10, help="seconds of samples per message (1-60)")
    s.add_argument("--out", type=Path, default=None, help="where to write policies and ground truth")
    s.add_argument(
        "--faults",
        action="store_true",
        help="real-world sensor faults: one-fix GPS glitches, tunnels without GPS, device clock drift",
    )
    s.add_argument(
        "--offline",
        action="store_true",
        help="write telemetry to Parquet in --out (the `ubi score-file` format) instead of MQTT",
    )
    s.add_argument(
        "--motion-only-share",
        type=float,
        default=0.0,
        help="share of devices that send no ignition events, e.g. phone apps (trips cut by motion)",
    )
    from simulator.sensors import PROFILES, device_mix_arg

    s.add_argument(
        "--device-mix",
        type=device_mix_arg,
        default="",
        help=f"device classes with their artefacts, NAME:WEIGHT,... of {', '.join(PROFILES)} (default: every "
        "device ideal, the legacy simulator), e.g. phone_raw:2,phone_linear:1,obd:1,oem:1",
    )
    s.add_argument(
        "--motion",
        choices=["legacy", "calibrated"],
        default=None,
        help="manoeuvres: legacy (events far above the cut points) or calibrated on real recordings (default: "
        "calibrated with --device-mix, else legacy)",
    )
    s.set_defaults(func=_simulate)

    for name, func, what in (
        ("bridge", _bridge, "move device messages from MQTT to Kafka (at-least-once)"),
        ("score", _score, "cut trips from the Kafka stream and score them (numba)"),
        ("store", _store, "write scored trips from Kafka into DuckDB (single writer)"),
    ):
        s = sub.add_parser(name, help=what)
        s.add_argument("--client-id", default=f"ubi-{name}-1")
        s.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port (0 = off)")
        s.set_defaults(func=func)

    s = sub.add_parser("pipeline", help="run bridge, scorer and store, restarting any that dies (a supervisor)")
    s.add_argument("--bridges", type=int, default=1)
    s.add_argument("--scorers", type=int, default=1)
    s.set_defaults(func=_pipeline)

    s = sub.add_parser("policies", help="load policy data (Parquet) into DuckDB")
    s.add_argument("action", choices=["load"])
    s.add_argument("file", type=Path)
    s.set_defaults(func=_policies)

    s = sub.add_parser("price", help="price a month: telematics factors, caps, premiums with traces")
    s.add_argument("--month", required=True, help="YYYY-MM")
    s.add_argument("--rulebook", type=Path, default=None)
    s.set_defaults(func=_price)

    s = sub.add_parser("score-file", help="score historical telemetry from CSV or Parquet files (back-tests)")
    s.add_argument("paths", nargs="*", type=Path, help="telemetry files (see docs/score-file.md for columns)")
    s.add_argument(
        "--imu",
        nargs="+",
        action="extend",
        type=Path,
        default=[],
        help="accelerometer files, if separate from GPS (takes every file after it: give the telemetry files first, "
        "or end the list with --)",
    )
    s.add_argument("--out", type=Path, required=True, help="output file: .csv, .parquet or .json")
    s.set_defaults(func=_score_file)

    s = sub.add_parser("actuary", help="actuary tools: what-if dislocation report, claim-frequency fit, fairness audit")
    s.add_argument("action", choices=["whatif", "fit", "fairness", "simulate-book", "load-book"])
    s.add_argument("--rulebook", type=Path, default=None, help="proposed rulebook (whatif)")
    s.add_argument("--month", default=None, help="YYYY-MM (default: latest priced month)")
    s.add_argument("--out", type=Path, default=None, help="report folder (default: .ubi/reports/<action>)")
    s.add_argument("--threshold", type=float, default=None, help="fairness: disparity that raises a flag")
    s.add_argument(
        "--book",
        type=Path,
        default=None,
        help="simulate-book / load-book: folder (with book.toml); fit / fairness: the name of a loaded book",
    )
    s.add_argument("--spec", type=Path, default=None, help="load-book: the book's model spec (docs/book.md)")
    s.add_argument("--policies", type=int, default=50_000, help="simulate-book: policies in the book")
    s.add_argument("--seed", type=int, default=7, help="simulate-book: random seed")
    s.set_defaults(func=_actuary)

    s = sub.add_parser("rulebook", help="validate a rulebook file")
    s.add_argument("action", choices=["check"])
    s.add_argument("file", type=Path)
    s.set_defaults(func=_rulebook)

    from ubi.cli import portal  # statements, serve, portal, review (issue 15)

    portal.register(sub)

    s = sub.add_parser("sql", help="run read-only SQL against the DuckDB store (recorded in the audit log)")
    s.add_argument("query")
    s.add_argument("--db", type=Path, default=None)
    s.add_argument(
        "--actuary", action="store_true", help="only the rating tables, with keyed pseudonyms instead of ids"
    )
    s.set_defaults(func=_sql)

    from ubi.cli import privacy  # privacy export|erase|consent|encrypt-db, audit verify (issue 13)

    privacy.register(sub)

    from ubi.cli import topics  # topics check|apply (issue 16)

    topics.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from ubi.cli import logs

    args = build_parser().parse_args(argv)
    logs.setup(args.log_level)
    # Whatever a ubi command writes (the DuckDB file and its WAL, statements, exports, logs) is readable by its
    # owner only: telematics data is personal data (issue 11: a new store file was world-readable).
    os.umask(0o077)
    try:
        return args.func(args)
    except UBIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
