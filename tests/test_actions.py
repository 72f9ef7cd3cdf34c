"""The action registry and the node actions: ping, labels, systemd restart, GPU power limit.

`node.systemd.restart` runs a recording script in place of systemctl (it appends its
argv to a file), so what would run on a node is asserted exactly; the power limit
runs against the NVML replay of a real H200 (limits 200-700 W), whose setter keeps
the new limit and refuses what NVML refuses. The Kubernetes actions are in
`test_actions_kubernetes.py`.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pynvml
import pytest

from edge_agent.actions import REGISTRY, executor_for
from edge_agent.actions.base import ActionContext, ActionSettings, Outcome
from edge_agent.actions.gpu_power import SetPowerLimit
from edge_agent.actions.labels import SetLabels
from edge_agent.actions.nvml_power import NvmlPowerControl
from edge_agent.actions.ping import Ping
from edge_agent.actions.systemd import RestartUnit
from edge_agent.nvml.loader import open_gpu_backend
from sentinel.actions import CATALOGUE
from sentinel.refusals import CommandRefused, ExecutionFailed, Reason
from sentinel.v1 import command_pb2

UNIT = "nvidia-persistenced.service"


class MemoryLabels:
    """A LabelStore in memory that records each update it is given."""

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self.labels = dict(labels or {})
        self.updates: list[dict[str, str]] = []

    def current(self) -> dict[str, str]:
        return dict(self.labels)

    def update(self, changes: Mapping[str, str]) -> None:
        self.updates.append(dict(changes))
        for key, value in changes.items():
            if value:
                self.labels[key] = value
            else:
                self.labels.pop(key, None)


def context(settings: ActionSettings | None = None, **fields: Any) -> ActionContext:
    fields.setdefault("labels", MemoryLabels())
    return ActionContext("node-a", settings or ActionSettings(), **fields)


@contextmanager
def refused(reason: Reason, message: str) -> Iterator[None]:
    """The block must raise CommandRefused with exactly this reason and message."""
    with pytest.raises(CommandRefused) as info:
        yield
    assert (info.value.code, info.value.message) == (reason, message)


def change(resource: str, field: str, was: str, now: str, what: str) -> command_pb2.PlannedChange:
    return command_pb2.PlannedChange(
        resource=resource, field=field, from_value=was, to_value=now, description=what
    )


# -- registry ------------------------------------------------------------------------------------


def test_registry_covers_the_catalogue_exactly() -> None:
    assert set(REGISTRY) == set(CATALOGUE)
    for name, executor in REGISTRY.items():
        assert executor.spec is CATALOGUE[name], name


def test_executor_for_finds_registered_names_and_refuses_others() -> None:
    assert executor_for("agent.ping") is REGISTRY["agent.ping"]
    with pytest.raises(CommandRefused) as info:
        executor_for("node.reboot")
    assert info.value.code is Reason.UNKNOWN_ACTION
    assert info.value.message.startswith("this agent has no executor for action 'node.reboot'")


# -- agent.ping ------------------------------------------------------------------------------------


def test_ping_answers_pong_and_changes_nothing() -> None:
    ctx = context()
    Ping().check({}, ctx)
    assert Ping().plan({}, ctx) == Outcome((), "pong")
    assert Ping().execute({}, ctx) == Outcome((), "pong")


# -- node.labels.set ---------------------------------------------------------------------------


def test_labels_plan_shows_each_change_and_writes_nothing() -> None:
    store = MemoryLabels({"zone": "eu-1", "pool": "a100", "keep": "yes"})
    ctx = context(labels=store)
    params = {"labels": "zone=eu-2, pool=,keep=yes,tier=gold"}
    SetLabels().check(params, ctx)
    outcome = SetLabels().plan(params, ctx)
    assert outcome.changes == (
        change("node/node-a", "labels.pool", "a100", "", "remove label pool"),
        change("node/node-a", "labels.tier", "", "gold", "set label tier=gold"),
        change("node/node-a", "labels.zone", "eu-1", "eu-2", "set label zone=eu-2"),
    )
    assert outcome.message == "3 label(s) changed"
    assert store.updates == []
    assert store.labels == {"zone": "eu-1", "pool": "a100", "keep": "yes"}


def test_labels_execute_writes_only_what_differs() -> None:
    store = MemoryLabels({"zone": "eu-1", "pool": "a100", "keep": "yes"})
    outcome = SetLabels().execute({"labels": "zone=eu-2,pool=,keep=yes"}, context(labels=store))
    assert store.updates == [{"pool": "", "zone": "eu-2"}]
    assert store.labels == {"zone": "eu-2", "keep": "yes"}
    assert [c.field for c in outcome.changes] == ["labels.pool", "labels.zone"]


def test_labels_already_as_asked_change_nothing() -> None:
    store = MemoryLabels({"zone": "eu-1"})
    outcome = SetLabels().execute({"labels": "zone=eu-1,gone="}, context(labels=store))
    assert outcome == Outcome((), "labels already as asked")
    assert store.updates == []


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("", "parameter 'labels' names no label (k=v[,k=v])"),
        ("zone", 'invalid label "zone": expected key=value'),
        (
            "-zone=a",
            "invalid label key \"-zone\": the name must use letters, digits, '-', '_' or '.',"
            " and start and end with a letter or digit",
        ),
        ("zone=a,zone=b", "label 'zone' is given more than once"),
    ],
)
def test_labels_malformed_are_refused(labels: str, message: str) -> None:
    store = MemoryLabels()
    with refused(Reason.MALFORMED, message):
        SetLabels().check({"labels": labels}, context(labels=store))
    assert store.updates == []


# -- node.systemd.restart ----------------------------------------------------------------------


def script(directory: Path, body: str) -> Path:
    path = directory / "systemctl"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[Path, Path]:
    """(a systemctl stand-in that appends its argv, one `[arg]` each, as a line; that file)."""
    calls = tmp_path / "calls"
    log = shlex.quote(str(calls))
    body = f'for a in "$@"; do printf "[%s]" "$a"; done >> {log}\necho >> {log}\n'
    return script(tmp_path, body), calls


def systemd_context(systemctl: Path, units: frozenset[str] = frozenset({UNIT})) -> ActionContext:
    return context(ActionSettings(systemctl_path=str(systemctl), systemd_units=units))


def test_systemd_plan_says_what_would_run_and_runs_nothing(recorder: tuple[Path, Path]) -> None:
    systemctl, calls = recorder
    ctx = systemd_context(systemctl)
    RestartUnit().check({"unit": UNIT}, ctx)
    outcome = RestartUnit().plan({"unit": UNIT}, ctx)
    assert outcome.message == f"would run: {systemctl} restart -- {UNIT}"
    assert outcome.changes == (
        change(f"systemd/{UNIT}", "state", "", "restarted", f"systemctl restart {UNIT}"),
    )
    assert not calls.exists()


def test_systemd_execute_runs_exactly_restart_of_the_unit(recorder: tuple[Path, Path]) -> None:
    systemctl, calls = recorder
    outcome = RestartUnit().execute({"unit": UNIT}, systemd_context(systemctl))
    assert calls.read_text() == f"[restart][--][{UNIT}]\n"
    assert outcome.message == f"ran: {systemctl} restart -- {UNIT}"
    assert len(outcome.changes) == 1


def test_systemd_unit_outside_the_allow_list_is_refused(recorder: tuple[Path, Path]) -> None:
    systemctl, calls = recorder
    message = "unit sshd.service is not in the agent's systemd allow-list"
    with refused(Reason.POLICY_DENIED, message):
        RestartUnit().check({"unit": "sshd.service"}, systemd_context(systemctl))
    assert not calls.exists()


@pytest.mark.parametrize(
    "unit", ["nvidia.service; reboot", "../etc/x.service", "nvidia", "a b.service", "x.device"]
)
def test_systemd_invalid_unit_names_are_refused_even_if_allowed(
    recorder: tuple[Path, Path], unit: str
) -> None:
    systemctl, calls = recorder
    with refused(Reason.POLICY_DENIED, f"unit {unit!r} is not a valid systemd unit name"):
        RestartUnit().check({"unit": unit}, systemd_context(systemctl, frozenset({unit})))
    assert not calls.exists()


def test_systemd_nonzero_exit_fails_with_code_and_stderr(tmp_path: Path) -> None:
    systemctl = script(
        tmp_path,
        'echo "noise" >&2\n'
        'echo "Job for $3 failed because the control process exited." >&2\n'
        "exit 5\n",
    )
    with pytest.raises(ExecutionFailed) as info:
        RestartUnit().execute({"unit": UNIT}, systemd_context(systemctl))
    assert info.value.message == (
        f"{systemctl} restart -- {UNIT} failed with exit code 5: noise\n"
        f"Job for {UNIT} failed because the control process exited."
    )


def test_systemd_missing_binary_fails(tmp_path: Path) -> None:
    missing = tmp_path / "no-systemctl"
    with pytest.raises(ExecutionFailed) as info:
        RestartUnit().execute({"unit": UNIT}, systemd_context(missing))
    assert info.value.message == f"cannot run {missing}: No such file or directory"


def test_systemd_hung_restart_fails_after_the_timeout(tmp_path: Path) -> None:
    systemctl = script(tmp_path, "exec sleep 30\n")
    with pytest.raises(ExecutionFailed) as info:
        RestartUnit(timeout_s=0.2).execute({"unit": UNIT}, systemd_context(systemctl))
    assert info.value.message == f"{systemctl} restart -- {UNIT} did not finish within 0.2 s"


# -- node.gpu.set_power_limit ------------------------------------------------------------------


@pytest.fixture
def nvml() -> Any:
    """The replay of a real H200 (limit 700 W, constraints 200-700 W), two GPUs."""
    backend, _ = open_gpu_backend("builtin:h200", 2)
    return backend


def limit_mw(nvml: Any, gpu: int) -> int:
    return int(nvml.nvmlDeviceGetPowerManagementLimit(nvml.nvmlDeviceGetHandleByIndex(gpu)))


def test_nvml_power_control_reads_in_watts(nvml: Any) -> None:
    power = NvmlPowerControl(nvml)
    assert power.gpu_count() == 2
    assert power.power_limit_constraints_w(1) == (200.0, 700.0)
    assert power.power_limit_w(1) == 700.0


def test_power_plan_shows_the_change_and_leaves_nvml_alone(nvml: Any) -> None:
    ctx = context(power=NvmlPowerControl(nvml))
    params = {"gpu": 1, "watts": 450.5}
    SetPowerLimit().check(params, ctx)
    outcome = SetPowerLimit().plan(params, ctx)
    assert outcome.changes == (
        change("gpu/1", "power_limit_w", "700", "450.5", "set GPU 1's power limit to 450.5 W"),
    )
    assert outcome.message == "GPU 1: 700 W -> 450.5 W"
    assert limit_mw(nvml, 1) == 700_000


def test_power_execute_sets_that_gpu_only(nvml: Any) -> None:
    ctx = context(power=NvmlPowerControl(nvml))
    outcome = SetPowerLimit().execute({"gpu": 1, "watts": 450.5}, ctx)
    assert (limit_mw(nvml, 1), limit_mw(nvml, 0)) == (450_500, 700_000)
    handle = nvml.nvmlDeviceGetHandleByIndex(1)
    assert nvml.nvmlDeviceGetEnforcedPowerLimit(handle) == 450_500
    assert outcome.changes[0].from_value == "700"
    assert outcome.changes[0].to_value == "450.5"
    again = SetPowerLimit().execute({"gpu": 1, "watts": 450.5}, ctx)
    assert again == Outcome((), "GPU 1's power limit is already 450.5 W")


def test_power_without_nvml_is_refused() -> None:
    with refused(Reason.BAD_TARGET, "no GPUs (NVML) on this node"):
        SetPowerLimit().check({"gpu": 0, "watts": 300.0}, context(power=None))


@pytest.mark.parametrize("gpu", [2, -1])
def test_power_on_a_gpu_that_is_not_there_is_refused(nvml: Any, gpu: int) -> None:
    with refused(Reason.BAD_TARGET, f"no GPU {gpu} on this node (it has 2: 0..1)"):
        SetPowerLimit().check({"gpu": gpu, "watts": 300.0}, context(power=NvmlPowerControl(nvml)))


@pytest.mark.parametrize(("watts", "shown"), [(150.0, "150"), (700.5, "700.5"), (math.nan, "nan")])
def test_power_outside_nvml_constraints_is_refused(nvml: Any, watts: float, shown: str) -> None:
    message = f"{shown} W for GPU 0 is outside NVML's limits [200, 700] W"
    with refused(Reason.POLICY_DENIED, message):
        SetPowerLimit().check({"gpu": 0, "watts": watts}, context(power=NvmlPowerControl(nvml)))
    assert limit_mw(nvml, 0) == 700_000


def test_replay_refuses_what_nvml_refuses(nvml: Any) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceSetPowerManagementLimit(handle, 199_999)
    with pytest.raises(ExecutionFailed) as info:
        NvmlPowerControl(nvml).set_power_limit_w(0, 800.0)
    assert info.value.message == "NVML could not set GPU 0's power limit to 800 W: Invalid Argument"
    assert limit_mw(nvml, 0) == 700_000
    nvml.nvmlDeviceSetPowerManagementLimit(handle, 200_000)
    assert limit_mw(nvml, 0) == 200_000
