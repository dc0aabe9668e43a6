"""One job spec, derived everywhere: the places that offer a job field agree with ``JobSpec``.

``JobSpec`` (images/distproc/spec.py) defines each field once. The distproc CLI flags, the
orchestrator's ``Job`` model (and its JSON schema), the argv ``ClusterRun.job`` hands to
``submit`` and the overrides of ``orchestrate job`` are derived from it; these tests fail if
one of them misses a field, or gives it another default, bound or choice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from distproc import cli as distproc_cli
from distproc.kinds import DEFAULT_SIZE, SIZE_MEANING, default_size
from distproc.spec import JobField, JobSpec, job_fields, make_spec, spec_argv
from fake_backend import FakeBackend
from pydantic import ValidationError

from orchestrate import cli as orchestrate_cli
from orchestrate.cluster import ClusterRun
from orchestrate.events import NullEvents
from orchestrate.model import Cluster, cluster_json_schema, load_cluster_text
from orchestrate.model.topology import Job

FIELDS = job_fields()
NUMERIC = [f for f in FIELDS if f.type in (int, float)]
FLOATS = [f for f in FIELDS if f.type is float]
INTS = [f for f in FIELDS if f.type is int]
STRINGS = [f for f in FIELDS if f.type is str]
BOOLS = [f for f in FIELDS if f.type is bool]
CHOICES = [f for f in FIELDS if f.choices]

# Non-default values for every field (some on a bound), in two jobs because the classic
# protocol takes kind 'square' only. A new JobSpec field must be added here (test below).
LEASED = {
    "protocol": "leased",
    "kind": "io",
    "tasks": 7,
    "size": 5,
    "seed": -(2**63),
    "batch": 100_000,
    "lease_seconds": 0.001,
    "task_timeout": 1234.5678,
    "max_attempts": 100,
    "retry_errors": False,
    "results": "stream",
}
CLASSIC = {**LEASED, "protocol": "classic", "kind": "square", "seed": 2**63 - 1}
JOBS = [pytest.param(LEASED, id="leased"), pytest.param(CLASSIC, id="classic")]

MINIMAL = """\
name: mini
networks: [{name: lan, subnet: 198.18.5.0/28}]
master: {networks: [lan]}
workers: [{name: w, networks: [lan]}]
"""


def test_the_field_kinds_are_all_exercised() -> None:
    """The generated cases below are not vacuous: each kind of field exists."""
    assert INTS and FLOATS and STRINGS and BOOLS and CHOICES
    assert all(f.low is not None and f.high is not None for f in NUMERIC), "bound every number"


def test_the_sample_jobs_give_every_field_a_non_default_value() -> None:
    names = [f.name for f in FIELDS]
    assert list(LEASED) == names and list(CLASSIC) == names, "add the new field to LEASED"
    for f in FIELDS:
        assert LEASED[f.name] != f.default or CLASSIC[f.name] != f.default, f.name


# -- the distproc CLI ------------------------------------------------------------------------


def _action(command: str, f: JobField) -> Any:
    parser = distproc_cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    found = [a for a in sub._actions if a.dest == f.name]
    assert len(found) == 1, f"`distproc {command}` has no flag for JobSpec.{f.name}"
    return found[0]


def _parse(command: str, *words: str) -> Any:
    return distproc_cli.build_parser().parse_args([command, *words])


def _below(f: JobField) -> Any:
    assert f.low is not None
    return f.low - 1 if f.type is int else f.low / 2 if f.low > 0 else f.low - 1


def _above(f: JobField) -> Any:
    assert f.high is not None
    return f.high + 1 if f.type is int else f.high * 2


@pytest.mark.parametrize("command", ["master", "submit"])
@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_every_field_is_a_flag_with_the_same_default(command: str, f: JobField) -> None:
    action = _action(command, f)
    assert f.flag in action.option_strings
    default = None if (command, f.name) == ("master", "tasks") else f.default  # no job
    assert action.default == default
    assert getattr(_parse(command), f.name) == default


@pytest.mark.parametrize("command", ["master", "submit"])
@pytest.mark.parametrize("f", NUMERIC, ids=lambda f: f.name)
def test_every_numeric_flag_has_the_same_bounds(
    command: str, f: JobField, capsys: pytest.CaptureFixture[str]
) -> None:
    for inside in (f.low, f.high):
        assert getattr(_parse(command, f.flag, str(inside)), f.name) == inside
    outside = [str(_below(f)), str(_above(f)), "x"] + (["nan", "inf"] if f.type is float else [])
    for word in outside:
        with pytest.raises(SystemExit):
            _parse(command, f.flag, word)
        assert f.name in capsys.readouterr().err, word


@pytest.mark.parametrize("f", CHOICES, ids=lambda f: f.name)
def test_every_choice_flag_has_the_same_choices(
    f: JobField, capsys: pytest.CaptureFixture[str]
) -> None:
    for choice in f.choices:
        assert getattr(_parse("submit", f.flag, choice), f.name) == choice
    with pytest.raises(SystemExit):
        _parse("submit", f.flag, "nope")
    assert f.name in capsys.readouterr().err


@pytest.mark.parametrize("f", BOOLS, ids=lambda f: f.name)
def test_every_bool_flag_goes_both_ways(f: JobField) -> None:
    assert getattr(_parse("submit", f.flag), f.name) is True
    assert getattr(_parse("submit", f.negative_flag), f.name) is False


def test_old_flag_names_still_work() -> None:
    args = _parse("submit", "--kind", "cpu", "--tasks", "3", "--size", "4", "--seed", "5",
                  "--protocol", "leased", "--batch", "6", "--lease-seconds", "7",
                  "--task-timeout", "8", "--max-attempts", "9", "--no-retry-errors")  # fmt: skip
    spec = distproc_cli._spec(args)
    assert spec == {**JobSpec().as_dict(), "kind": "cpu", "tasks": 3, "size": 4, "seed": 5,
                    "batch": 6, "lease_seconds": 7.0, "task_timeout": 8.0, "max_attempts": 9,
                    "retry_errors": False}  # fmt: skip


def test_submit_results_implies_streaming_them() -> None:
    assert distproc_cli._spec(_parse("submit"))["results"] == "drop"
    args = _parse("submit", "--results")
    assert args.include_results and distproc_cli._spec(args)["results"] == "stream"


# -- the orchestrator's model ----------------------------------------------------------------


def _job_schema() -> dict[str, Any]:
    schema = cluster_json_schema()
    return schema["$defs"]["Job"]["properties"]


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_every_field_is_in_the_model_with_the_same_default_bounds_and_choices(f: JobField) -> None:
    assert f.name in Job.model_fields, f"Job has no field {f.name}"
    assert Job.model_fields[f.name].default == f.default
    assert getattr(Job(), f.name) == f.default
    prop = _job_schema()[f.name]
    assert prop["default"] == f.default
    if f.nullable:  # the value's own schema, or null
        value_schema, null = prop["anyOf"]
        assert null == {"type": "null"}
        prop = {**prop, **value_schema}
    assert prop.get("minimum") == f.low and prop.get("maximum") == f.high
    assert tuple(prop.get("enum", ())) == f.choices
    assert prop["type"] == {int: "integer", float: "number", str: "string", bool: "boolean"}[f.type]
    assert prop["description"].lower().startswith(f.help[:20].lower())


@pytest.mark.parametrize("f", NUMERIC, ids=lambda f: f.name)
def test_the_model_enforces_the_same_bounds(f: JobField) -> None:
    for inside in (f.low, f.high):
        assert getattr(Job.model_validate({f.name: inside}), f.name) == inside
    outside = [_below(f), _above(f)] + ([math.nan, math.inf] if f.type is float else [])
    for value in outside:
        with pytest.raises(ValidationError, match=f.name):
            Job.model_validate({f.name: value})


@pytest.mark.parametrize("f", CHOICES, ids=lambda f: f.name)
def test_the_model_enforces_the_same_choices(f: JobField) -> None:
    for choice in f.choices:
        Job.model_validate({f.name: choice})
    with pytest.raises(ValidationError, match=f.name):
        Job.model_validate({f.name: "nope"})


def test_the_model_has_no_field_the_spec_lacks() -> None:
    """An orchestrate-only field would need an explicit place outside ``spec()``."""
    assert set(Job.model_fields) == {f.name for f in FIELDS}
    assert Job().spec() == {f.name: f.default for f in FIELDS}  # size None: not given
    assert make_spec(Job().spec()) == JobSpec()  # resolved the same way


# -- a nullable field: None is "not given", resolved where the spec is made ----------------

NULLABLE = [f for f in FIELDS if f.nullable]


def test_size_is_the_nullable_field() -> None:
    """The cases below are not vacuous; a new nullable field needs its resolution here."""
    assert [f.name for f in NULLABLE] == ["size"]


@pytest.mark.parametrize("kind", ["square", "cpu", "io", "pkg.mod:func"])
def test_no_size_is_the_kinds_default_everywhere(kind: str) -> None:
    want = default_size(kind)
    assert make_spec({"kind": kind}).size == want
    assert make_spec({"kind": kind, "size": None}).size == want
    assert JobSpec(kind=kind).size == want  # made directly, too: the ledger never sees None
    assert Job.model_validate({"kind": kind}).size is None  # the file's "not given"
    assert Job.model_validate({"kind": kind, "size": None}).size is None
    args = _parse("submit", "--kind", kind)
    assert args.size is None and make_spec(distproc_cli._spec(args)).size == want
    argv = spec_argv({**JobSpec().as_dict(), "kind": kind, "size": None})
    assert argv[argv.index("--size") + 1] == str(want)  # explicit on the command line


def test_an_explicit_size_wins_over_the_kinds_default() -> None:
    assert make_spec({"kind": "io", "size": 0}).size == 0
    assert make_spec({"kind": "cpu", "size": 7}).size == 7


def test_the_size_help_says_each_kinds_default() -> None:
    text = next(f for f in FIELDS if f.name == "size").help
    for kind, size in DEFAULT_SIZE.items():
        assert f"'{kind}' {SIZE_MEANING[kind]}" in text
        assert (f"(default {size})" in text) == bool(size), kind


# -- the round trip: model -> argv -> distproc parser -> JobSpec ---------------------------


def _cluster_with(job: dict[str, Any]) -> Cluster:
    return load_cluster_text(MINIMAL + "job: " + json.dumps(job) + "\n")


@pytest.mark.parametrize("values", JOBS)
def test_model_to_argv_to_distproc_parser_to_jobspec_round_trips(
    values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path))
    cluster = _cluster_with(values)  # through the YAML loader, as a user writes it
    assert cluster.job.spec() == values
    backend = FakeBackend()
    runner = ClusterRun(cluster, backend, NullEvents())
    runner.up(run_job=False)
    runner.job(timeout=30)
    argv = backend.controls[-1]  # with the --master the backend added
    assert argv[0] == "submit"
    args = distproc_cli.build_parser().parse_args(argv)
    assert make_spec(distproc_cli._spec(args)).as_dict() == values
    master = distproc_cli.build_parser().parse_args(["master", *spec_argv(values)])
    assert make_spec(distproc_cli._spec(master)).as_dict() == values


@pytest.mark.parametrize("values", JOBS)
def test_orchestrate_job_overrides_take_every_field(values: dict[str, Any]) -> None:
    args = orchestrate_cli.build_parser().parse_args(["job", *spec_argv(values)])
    overrides = orchestrate_cli._job_overrides(args, _cluster_with({}))
    assert overrides == values


def test_orchestrate_job_overrides_name_the_flag() -> None:
    args = orchestrate_cli.build_parser().parse_args(["job", "--lease-seconds", "0"])
    with pytest.raises(orchestrate_cli.UsageError, match="--lease-seconds"):
        orchestrate_cli._job_overrides(args, _cluster_with({}))


def test_argv_needs_every_field() -> None:
    """A spec missing a field is an error on the host, not a default in the container."""
    partial = JobSpec().as_dict()
    del partial["results"]
    with pytest.raises(KeyError, match="results"):
        spec_argv(partial)


# -- make_spec: everything is checked at the boundary --------------------------------------


def _bad_values() -> list[Any]:
    cases = []
    for f in FIELDS:
        bad: list[Any] = []
        if f.type is float:
            bad += [math.nan, math.inf, -math.inf, True, "3"]
        elif f.type is int:
            bad += [True, False, "3", 3.0]
        elif f.type is str:
            bad += [3, True, None]
        else:
            bad += [1, "true", None]
        if f.low is not None:
            bad.append(_below(f))
        if f.high is not None:
            bad.append(_above(f))
        if f.choices:
            bad.append("nope")
        cases += [pytest.param(f.name, value, id=f"{f.name}={value!r}") for value in bad]
    return cases


@pytest.mark.parametrize(("name", "value"), _bad_values())
def test_make_spec_rejects_a_bad_value_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        make_spec({name: value})


def test_make_spec_rejects_unknown_keys_naming_them() -> None:
    with pytest.raises(ValueError, match="colour"):
        make_spec({"tasks": 3, "colour": "red"})


@pytest.mark.parametrize("values", JOBS)
def test_make_spec_accepts_the_bounds(values: dict[str, Any]) -> None:
    assert make_spec(values).as_dict() == values
    assert make_spec({"lease_seconds": 5}).lease_seconds == 5.0  # an int is a number
