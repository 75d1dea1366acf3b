"""Every exception the project raises on purpose is in the tree of ubi/common/errors.py (one root, UBIError, that
the CLI turns into a clear message), and the ones that joined it late are still caught where they were before."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from tests.doubles import KafkaLog
from tests.stage_data import publish
from tests.test_score_delivery import refusing_stage, streams
from tests.test_score_stage import CFG
from ubi.common import errors
from ubi.common.config import PROJECT_ROOT, Config
from ubi.common.errors import ScoreFileError, StackError, UBIError
from ubi.stages import score, score_file

PACKAGES = ("ubi", "scoring", "pricing", "ingest", "simulator")
# Exception classes deliberately outside the tree, with why. Anything else must derive from UBIError.
OUTSIDE = {
    # a bug in the scorer, not a user's mistake: it must stop the stage with its traceback, not a one-line message
    "ubi.stages.score.ScoringBroken",
    # internal: carries a batch's failures from the cutter to the score stage, which quarantines or re-raises them
    "scoring.trips.CutterFailed",
    # internal control flow of the contract check: turned into a ContractError/Rejected before it leaves the module
    "ingest.contract._Bad",
}


def project_exception_classes() -> dict[str, type]:
    """Every class defined in the project's packages that is an exception. Only modules whose source defines a
    class deriving from something are imported (not the whole tree)."""
    found = {}
    for pkg in PACKAGES:
        for path in sorted((PROJECT_ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text())
            names = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.bases]
            if not names:
                continue
            mod_name = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__")
            mod = importlib.import_module(mod_name)
            for name in names:
                cls = getattr(mod, name, None)
                if isinstance(cls, type) and issubclass(cls, BaseException) and cls.__module__ == mod_name:
                    found[f"{mod_name}.{name}"] = cls
    return found


def test_every_exception_of_the_project_is_in_the_tree_or_named_with_its_reason():
    classes = project_exception_classes()
    assert {"ubi.adapters.kafka.DeliveryFailed", "ubi.common.errors.ScoreFileError"} <= set(classes)
    outside = {name for name, cls in classes.items() if not issubclass(cls, UBIError)}
    assert outside == OUTSIDE


def test_the_documented_tree_names_every_class_of_errors_py():
    doc = errors.__doc__ or ""
    own = [n for n, c in vars(errors).items() if isinstance(c, type) and issubclass(c, UBIError) and c is not UBIError]
    assert doc.splitlines()[2] == "UBIError"
    for name in own + ["KafkaAuthError", "DeliveryFailed"]:
        assert f"── {name} " in doc, name


def test_delivery_failed_is_one_class_a_stack_error_and_a_kafka_error():
    from ubi.adapters.kafka import DeliveryFailed

    assert score.DeliveryFailed is DeliveryFailed  # the score stage's and the bridge sink's are the same
    assert issubclass(DeliveryFailed, StackError) and issubclass(DeliveryFailed, KafkaError)


def test_a_refused_record_at_the_scorer_checkpoint_is_caught_by_the_root_and_by_the_retry_loop():
    log = KafkaLog()
    publish(log, CFG, streams())
    stage = refusing_stage(log, lambda t, n: t == CFG.kafka.trips_topic and n == 1)
    stage.consumer.on_idle = stage.stop
    with pytest.raises(UBIError) as caught:
        stage.run(install_signals=False)
    assert type(caught.value) is score.DeliveryFailed
    assert isinstance(caught.value, KafkaError)  # what run_with_retry catches to restart the stage
    assert "refused" in str(caught.value)


def test_a_bad_score_file_is_caught_by_the_root_and_still_as_a_value_error(tmp_path):
    bad = tmp_path / "gps.csv"
    bad.write_text("vehicle_id,t_ms,lat,lon,speed_mps\nV1,0,,,\n")  # a fix row without its position
    with pytest.raises(UBIError, match="V1: 1 fix rows lack one of lat") as caught:
        score_file.score_paths([bad], [], Config().scoring)
    assert type(caught.value) is ScoreFileError and isinstance(caught.value, ValueError)
    assert score_file.ScoreFileError is ScoreFileError  # the old import path still names it


def test_score_file_cli_turns_it_into_a_message(tmp_path, capsys):
    bad = tmp_path / "gps.json"
    bad.write_text("{}")

    class Args:
        paths = [Path(bad)]
        imu: list = []
        out = str(tmp_path / "out.csv")

    assert score_file.main(Config(), Args()) == 2
    assert "unknown file type" in capsys.readouterr().out
    assert not (tmp_path / "out.csv").exists()
