"""α / learning-rate schedules: values, monotonicity, dict round trips and refused inputs."""

from __future__ import annotations

import math

import pytest
import yaml

from alphaprune import make_schedule, schedule_from_dict
from alphaprune.core.schedules import SCHEDULE_KINDS, Schedule

#: One schedule dict per kind, with every key set to a non-default value.
EXAMPLES: dict[str, dict] = {
    "constant": {"kind": "constant", "alpha": 0.4, "lr": 0.002},
    "linear": {"kind": "linear", "start": 1.0, "end": 0.0, "epochs": 4, "lr": 0.001},
    "step": {"kind": "step", "values": [1.0, 0.5, 0.25, 0.0], "lr": 0.001, "lr_at_zero": 0.01},
    "exponential": {"kind": "exponential", "start": 1.0, "rate": 0.3, "floor": 0.01},
    "restart": {
        "kind": "restart",
        "alpha": 0.1,
        "rate": 0.3,
        "floor": 0.01,
        "lr": 0.001,
        "lr_at_zero": 0.01,
    },
}


def test_examples_cover_every_kind() -> None:
    assert sorted(EXAMPLES) == sorted(SCHEDULE_KINDS)


def test_constant() -> None:
    schedule = make_schedule("constant", alpha=0.4)
    assert [schedule.alpha(e) for e in (0, 1, 7, 1000)] == [0.4] * 4


def test_linear_values_and_hold() -> None:
    schedule = make_schedule("linear", start=1.0, end=0.0, epochs=4)
    assert [schedule.alpha(e) for e in range(7)] == pytest.approx(
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0]
    )
    assert schedule.alpha(4) == 0.0  # exactly 0, so shrink can cut the channels
    rising = make_schedule("linear", start=0.2, end=0.6, epochs=2)
    assert [rising.alpha(e) for e in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.6])


def test_step_values_then_last_holds() -> None:
    schedule = make_schedule("step", values=[1.0, 0.5, 0.25, 0.0])
    assert [schedule.alpha(e) for e in range(6)] == [1.0, 0.5, 0.25, 0.0, 0.0, 0.0]


def test_exponential_decays_then_snaps_to_zero_below_floor() -> None:
    schedule = make_schedule("exponential", start=1.0, rate=0.3, floor=0.01)
    assert schedule.alpha(0) == 1.0
    assert schedule.alpha(1) == pytest.approx(math.exp(-0.3), rel=1e-12)
    assert schedule.alpha(10) == pytest.approx(math.exp(-3.0), rel=1e-12)
    # 1·e^(-0.3 e) < 0.01  ⇔  e > ln(100)/0.3 ≈ 15.35
    first_zero = math.floor(math.log(100) / 0.3) + 1
    assert first_zero == 16
    assert schedule.alpha(first_zero - 1) == pytest.approx(math.exp(-0.3 * 15))
    assert schedule.alpha(first_zero - 1) >= 0.01
    assert schedule.alpha(first_zero) == 0.0
    assert schedule.alpha(first_zero + 10) == 0.0
    assert schedule.first_zero_epoch() == first_zero


def test_restart_from_point_one_with_rate_point_three() -> None:
    schedule = make_schedule("restart", alpha=0.1, rate=0.3)  # floor defaults to 0.01
    assert schedule.alpha(0) == pytest.approx(0.1, rel=1e-12)
    assert schedule.alpha(1) == pytest.approx(0.1 * math.exp(-0.3), rel=1e-12)
    # 0.1·e^(-0.3 e) < 0.01  ⇔  e > ln(10)/0.3 ≈ 7.68, so epoch 8 is the first at α = 0
    assert 0.1 * math.exp(-0.3 * 7) >= 0.01 > 0.1 * math.exp(-0.3 * 8)
    assert schedule.alpha(7) == pytest.approx(0.1 * math.exp(-2.1), rel=1e-12)
    assert schedule.alpha(8) == 0.0
    assert all(schedule.alpha(e) == 0.0 for e in range(8, 40))
    assert all(schedule.alpha(e) > 0.0 for e in range(8))
    assert schedule.first_zero_epoch() == 8


def test_floor_zero_never_snaps() -> None:
    schedule = make_schedule("exponential", start=1.0, rate=0.3, floor=0.0)
    assert schedule.alpha(100) == pytest.approx(math.exp(-30.0))
    assert schedule.alpha(100) > 0.0


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "linear", "start": 1.0, "end": 0.0, "epochs": 7},
        {"kind": "exponential", "start": 1.0, "rate": 0.3},
        {"kind": "restart", "alpha": 0.1, "rate": 0.3},
        {"kind": "exponential", "start": 0.9, "rate": 1.7, "floor": 0.05},
    ],
    ids=["linear", "exponential", "restart", "steep"],
)
def test_decaying_schedules_are_monotonic_non_increasing(spec) -> None:
    schedule = schedule_from_dict(spec)
    values = [schedule.alpha(e) for e in range(60)]
    assert all(b <= a for a, b in zip(values[:-1], values[1:], strict=True)), values
    assert values[-1] == 0.0
    assert all(0.0 <= v <= 1.0 for v in values)


def test_lr_at_zero_is_used_once_alpha_is_zero() -> None:
    schedule = make_schedule("step", values=[1.0, 0.5, 0.0], lr=0.001, lr_at_zero=0.01)
    assert [schedule.lr_for(e) for e in range(5)] == [0.001, 0.001, 0.01, 0.01, 0.01]
    assert schedule(1) == (0.5, 0.001)
    assert schedule(2) == (0.0, 0.01)
    restart = schedule_from_dict(EXAMPLES["restart"])
    assert [restart.lr_for(e) for e in range(12)] == [0.001] * 8 + [0.01] * 4


def test_lr_without_lr_at_zero_stays_lr() -> None:
    schedule = make_schedule("linear", epochs=2, lr=0.003)
    assert schedule.alpha(5) == 0.0
    assert [schedule.lr_for(e) for e in range(5)] == [0.003] * 5


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_to_dict_round_trip_is_equal_and_yaml_safe(kind) -> None:
    schedule = schedule_from_dict(EXAMPLES[kind])
    assert schedule.kind == kind
    data = schedule.to_dict()
    assert data["kind"] == kind
    again = schedule_from_dict(data)
    assert again == schedule
    assert type(again) is type(schedule)
    text = yaml.safe_dump(data)
    loaded = yaml.safe_load(text)
    assert loaded == data
    assert schedule_from_dict(loaded) == schedule
    assert [again.alpha(e) for e in range(20)] == [schedule.alpha(e) for e in range(20)]
    assert [again.lr_for(e) for e in range(20)] == [schedule.lr_for(e) for e in range(20)]


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_to_dict_uses_public_keys(kind) -> None:
    data = schedule_from_dict(EXAMPLES[kind]).to_dict()
    expected = dict(EXAMPLES[kind])
    assert set(expected) <= set(data), f"to_dict of {kind} lost keys"
    for key, value in expected.items():
        assert data[key] == value, key


def test_defaults_round_trip() -> None:
    for kind in SCHEDULE_KINDS:
        spec = {"kind": kind, "alpha": 0.2} if kind in ("constant", "restart") else {"kind": kind}
        schedule = schedule_from_dict(spec)
        assert schedule_from_dict(yaml.safe_load(yaml.safe_dump(schedule.to_dict()))) == schedule


def test_schedule_object_passes_through() -> None:
    schedule = make_schedule("constant", alpha=0.5)
    assert isinstance(schedule, Schedule)
    assert schedule_from_dict(schedule) is schedule


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cosine", "", None, 3])
def test_unknown_kind_raises_naming_it(kind) -> None:
    with pytest.raises(ValueError, match=f"unknown schedule kind {kind!r}"):
        schedule_from_dict({"kind": kind})


def test_missing_kind_and_non_mapping_raise() -> None:
    with pytest.raises(ValueError, match="kind"):
        schedule_from_dict({"alpha": 0.5})
    with pytest.raises(ValueError, match="mapping"):
        schedule_from_dict(["linear"])


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"kind": "linear", "epoch": 5}, "epoch"),
        ({"kind": "constant", "alpha_value": 0.5}, "alpha_value"),  # internal name, not public
        ({"kind": "restart", "alpha": 0.1, "start": 0.1}, "start"),
        ({"kind": "step", "values": [1.0], "rate": 0.3}, "rate"),
        ({"kind": "exponential", "alpha": 0.5}, "alpha"),
    ],
)
def test_unknown_key_raises_naming_it(spec, key) -> None:
    with pytest.raises(ValueError, match=f"unknown key '{key}'"):
        schedule_from_dict(spec)


def test_restart_needs_alpha() -> None:
    with pytest.raises(ValueError, match="'alpha'"):
        schedule_from_dict({"kind": "restart", "rate": 0.3})


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"kind": "constant", "alpha": 1.5}, "alpha"),
        ({"kind": "constant", "alpha": -0.1}, "alpha"),
        ({"kind": "constant", "alpha": float("nan")}, "alpha"),
        ({"kind": "linear", "start": 2.0}, "start"),
        ({"kind": "linear", "end": -1.0}, "end"),
        ({"kind": "step", "values": [1.0, 1.2]}, r"values\[1\]"),
        ({"kind": "exponential", "start": 1.01}, "start"),
        ({"kind": "exponential", "floor": 1.5}, "floor"),
        ({"kind": "restart", "alpha": 1.1}, "alpha"),
    ],
)
def test_alpha_outside_unit_interval_raises(spec, key) -> None:
    with pytest.raises(ValueError, match=f"'{key}'.*\\[0, 1\\]"):
        schedule_from_dict(spec)


@pytest.mark.parametrize("rate", [0, 0.0, -0.3, float("inf")])
@pytest.mark.parametrize("kind", ["exponential", "restart"])
def test_rate_must_be_positive(kind, rate) -> None:
    spec = {"kind": kind, "rate": rate}
    if kind == "restart":
        spec["alpha"] = 0.1
    with pytest.raises(ValueError, match="'rate'"):
        schedule_from_dict(spec)


@pytest.mark.parametrize("key", ["lr", "lr_at_zero"])
@pytest.mark.parametrize("value", [0, -1e-3, float("nan")])
def test_lr_must_be_positive(key, value) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        schedule_from_dict({"kind": "linear", key: value})


@pytest.mark.parametrize("values", [[], (), "1.0", None])
def test_empty_or_non_list_step_values_raise(values) -> None:
    with pytest.raises(ValueError, match="'values'"):
        schedule_from_dict({"kind": "step", "values": values})


@pytest.mark.parametrize("epoch", [-1, -10, 1.5, True, "3"])
def test_bad_epoch_raises(epoch) -> None:
    schedule = make_schedule("linear")
    with pytest.raises(ValueError, match="epoch"):
        schedule.alpha(epoch)
    with pytest.raises(ValueError, match="epoch"):
        schedule.lr_for(epoch)


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"kind": "constant", "alpha": True}, "alpha"),
        ({"kind": "linear", "start": False}, "start"),
        ({"kind": "linear", "epochs": True}, "epochs"),
        ({"kind": "step", "values": [1.0, True]}, r"values\[1\]"),
        ({"kind": "exponential", "rate": True}, "rate"),
        ({"kind": "restart", "alpha": True}, "alpha"),
        ({"kind": "linear", "lr": True}, "lr"),
        ({"kind": "linear", "lr_at_zero": True}, "lr_at_zero"),
    ],
)
def test_boolean_passed_as_number_raises(spec, key) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        schedule_from_dict(spec)


@pytest.mark.parametrize("epochs", [0, -2, 2.5, "10"])
def test_linear_epochs_must_be_positive_integer(epochs) -> None:
    with pytest.raises(ValueError, match="'epochs'"):
        schedule_from_dict({"kind": "linear", "epochs": epochs})


@pytest.mark.parametrize("value", ["0.5", None, [0.5]])
def test_non_numbers_raise(value) -> None:
    with pytest.raises(ValueError, match="'alpha'"):
        schedule_from_dict({"kind": "constant", "alpha": value})
