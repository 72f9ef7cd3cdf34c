"""Freeze windows on the local wall clock: DST in both hemispheres, gaps, folds, holidays,
break-glass. Expected instants are written out in UTC, worked by hand from the tz rules."""

from __future__ import annotations

from datetime import datetime

import pytest

from policy import (
    Bundle,
    Proposal,
    RuleResult,
    SlidingWindowLog,
    Verdict,
    evaluate,
    explain,
    load_bundle,
)

LOG = SlidingWindowLog()


def _freeze(window: str, *, extra: str = "", calendars: str = "") -> Bundle:
    return load_bundle(
        (
            "version: 1\nexpires_at: 2100-01-01T00:00:00Z\nallow: {actions: ['*']}\n"
            f"{calendars}rules:\n  - id: freeze\n    kind: freeze\n{extra}    windows:\n      - "
            f"{window}\n"
        ).encode()
    )


def _recurring(rrule: str, start: str, duration: str, zone: str) -> Bundle:
    return _freeze(
        f"recurring: {{rrule: '{rrule}', start: '{start}', duration: {duration}, timezone: {zone}}}"
    )


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _result(bundle: Bundle, when: str, *, break_glass: bool = False) -> RuleResult:
    proposal = Proposal("k8s.node.cordon", "node-a", {}, {}, break_glass=break_glass)
    decision = evaluate(bundle, proposal, _at(when), history=LOG)
    (result,) = [r for r in decision.results if r.rule_id == "freeze"]
    assert decision.verdict is result.verdict
    return result


def _frozen(bundle: Bundle, when: str) -> bool:
    return _result(bundle, when).reason == "FROZEN"


# A nightly 22:00-06:00 local window (22:00 for 8h) the night clocks change, and the next.
NIGHTLY = {
    "Europe/Berlin spring": (
        "Europe/Berlin",
        [
            ("2026-03-28T20:59Z", False),
            ("2026-03-28T21:00Z", True),  # 21:59 / 22:00 CET
            ("2026-03-29T03:59Z", True),
            ("2026-03-29T04:00Z", False),  # 05:59 / 06:00 CEST: 7 h
            ("2026-03-29T19:59Z", False),
            ("2026-03-29T20:00Z", True),  # 22:00 CEST next night
        ],
    ),
    "Europe/Berlin autumn": (
        "Europe/Berlin",
        [
            ("2026-10-24T19:59Z", False),
            ("2026-10-24T20:00Z", True),  # 22:00 CEST
            ("2026-10-25T04:59Z", True),
            ("2026-10-25T05:00Z", False),  # 06:00 CET: 9 h
            ("2026-10-25T20:59Z", False),
            ("2026-10-25T21:00Z", True),  # 22:00 CET
        ],
    ),
    "America/New_York spring": (
        "America/New_York",
        [
            ("2026-03-08T02:59Z", False),
            ("2026-03-08T03:00Z", True),  # 22:00 EST on the 7th
            ("2026-03-08T09:59Z", True),
            ("2026-03-08T10:00Z", False),  # 06:00 EDT
            ("2026-03-09T01:59Z", False),
            ("2026-03-09T02:00Z", True),  # 22:00 EDT on the 8th
        ],
    ),
    "America/New_York autumn": (
        "America/New_York",
        [
            ("2026-11-01T01:59Z", False),
            ("2026-11-01T02:00Z", True),  # 22:00 EDT on Oct 31
            ("2026-11-01T10:59Z", True),
            ("2026-11-01T11:00Z", False),  # 06:00 EST
            ("2026-11-02T02:59Z", False),
            ("2026-11-02T03:00Z", True),  # 22:00 EST on Nov 1
        ],
    ),
    "Australia/Sydney April (DST ends)": (
        "Australia/Sydney",
        [
            ("2026-04-04T10:59Z", False),
            ("2026-04-04T11:00Z", True),  # 22:00 AEDT (+11)
            ("2026-04-04T19:59Z", True),
            ("2026-04-04T20:00Z", False),  # 06:00 AEST (+10)
            ("2026-04-05T11:59Z", False),
            ("2026-04-05T12:00Z", True),  # 22:00 AEST
        ],
    ),
    "Australia/Sydney October (DST starts)": (
        "Australia/Sydney",
        [
            ("2026-10-03T11:59Z", False),
            ("2026-10-03T12:00Z", True),  # 22:00 AEST
            ("2026-10-03T18:59Z", True),
            ("2026-10-03T19:00Z", False),  # 06:00 AEDT
            ("2026-10-04T10:59Z", False),
            ("2026-10-04T11:00Z", True),  # 22:00 AEDT
        ],
    ),
    "Asia/Kolkata (+05:30, no DST)": (
        "Asia/Kolkata",
        [
            ("2026-03-29T16:29Z", False),
            ("2026-03-29T16:30Z", True),
            ("2026-03-30T00:29Z", True),
            ("2026-03-30T00:30Z", False),
        ],
    ),
}


@pytest.mark.parametrize(("zone", "checks"), NIGHTLY.values(), ids=NIGHTLY.keys())
def test_nightly_window_stays_at_local_2200_across_dst(
    zone: str, checks: list[tuple[str, bool]]
) -> None:
    bundle = _recurring("FREQ=DAILY", "22:00", "8h", zone)
    assert [(when, _frozen(bundle, when)) for when, _ in checks] == checks


def test_the_spring_night_is_seven_hours_long() -> None:
    result = _result(_recurring("FREQ=DAILY", "22:00", "8h", "Europe/Berlin"), "2026-03-29T00:00Z")
    assert result.details["start"] == "2026-03-28T21:00:00Z"
    assert result.details["end"] == "2026-03-29T04:00:00Z"
    assert result.details["local_time"] == "Sunday 2026-03-29 01:00 Europe/Berlin"


# 02:30 for 1h daily: on the spring-forward day 02:30 does not exist (02:00 -> 03:00), so
# the window opens at the transition and still closes at 03:30 local.
GAP = {
    "Europe/Berlin": (
        "Europe/Berlin",
        [
            ("2026-03-28T01:29Z", False),
            ("2026-03-28T01:30Z", True),  # the day before: 02:30 CET
            ("2026-03-28T02:29Z", True),
            ("2026-03-28T02:30Z", False),
            ("2026-03-29T00:59:59Z", False),  # 01:59:59 CET
            ("2026-03-29T01:00Z", True),  # 03:00 CEST, the transition
            ("2026-03-29T01:29Z", True),
            ("2026-03-29T01:30Z", False),  # 03:30 CEST
            ("2026-03-30T00:29Z", False),
            ("2026-03-30T00:30Z", True),  # 02:30 CEST the day after
        ],
    ),
    "America/New_York": (
        "America/New_York",
        [
            ("2026-03-08T06:59:59Z", False),
            ("2026-03-08T07:00Z", True),  # 03:00 EDT
            ("2026-03-08T07:29Z", True),
            ("2026-03-08T07:30Z", False),
        ],
    ),
}


@pytest.mark.parametrize(("zone", "checks"), GAP.values(), ids=GAP.keys())
def test_window_starting_in_the_spring_gap_opens_at_the_transition(
    zone: str, checks: list[tuple[str, bool]]
) -> None:
    bundle = _recurring("FREQ=DAILY", "02:30", "1h", zone)
    assert [(when, _frozen(bundle, when)) for when, _ in checks] == checks


def test_window_entirely_inside_the_gap_covers_nothing_that_day() -> None:
    bundle = _recurring("FREQ=DAILY", "02:15", "30m", "Europe/Berlin")
    assert [
        _frozen(bundle, t) for t in ("2026-03-29T00:59Z", "2026-03-29T01:00Z", "2026-03-29T01:15Z")
    ] == [
        False,
        False,
        False,
    ]
    assert _frozen(bundle, "2026-03-28T01:15Z")  # 02:15 CET the day before


def test_window_in_the_repeated_hour_keeps_both_passes() -> None:
    # New York, 2026-11-01: 01:00-02:00 happens twice (EDT, then EST). 01:30 for 1h opens
    # at the first 01:30 (EDT) and closes at 02:30 EST: two hours of real time.
    bundle = _recurring("FREQ=DAILY", "01:30", "1h", "America/New_York")
    checks = [
        ("2026-11-01T05:29Z", False),
        ("2026-11-01T05:30Z", True),  # 01:30 EDT
        ("2026-11-01T06:30Z", True),  # 01:30 EST, the second pass
        ("2026-11-01T07:29Z", True),
        ("2026-11-01T07:30Z", False),  # 02:30 EST
    ]
    assert [(when, _frozen(bundle, when)) for when, _ in checks] == checks
    result = _result(bundle, "2026-11-01T06:00Z")
    assert (result.details["start"], result.details["end"]) == (
        "2026-11-01T05:30:00Z",
        "2026-11-01T07:30:00Z",
    )


def test_window_ending_in_the_repeated_hour_ends_at_its_second_pass() -> None:
    # Berlin, 2026-10-25: 02:00-03:00 repeats (CEST, then CET). 02:15 for 30m.
    bundle = _recurring("FREQ=DAILY", "02:15", "30m", "Europe/Berlin")
    checks = [
        ("2026-10-25T00:14Z", False),
        ("2026-10-25T00:15Z", True),  # 02:15 CEST
        ("2026-10-25T01:44Z", True),  # 02:44 CET
        ("2026-10-25T01:45Z", False),  # 02:45 CET
    ]
    assert [(when, _frozen(bundle, when)) for when, _ in checks] == checks


def test_weekly_weekend_window_and_interval_anchor() -> None:
    weekend = _recurring("FREQ=WEEKLY;BYDAY=SA", "00:00", "48h", "Europe/Berlin")
    assert not _frozen(weekend, "2026-11-27T22:59Z")  # Friday 23:59 CET
    assert _frozen(weekend, "2026-11-27T23:00Z")  # Saturday 00:00
    assert _frozen(weekend, "2026-11-29T22:59Z")  # Sunday 23:59
    assert not _frozen(weekend, "2026-11-30T00:00Z")  # Monday
    fortnight = _freeze(
        "recurring: {rrule: 'FREQ=WEEKLY;INTERVAL=2;BYDAY=MO', start: '09:00', duration: 1h,"
        " timezone: UTC, dtstart: '2026-01-05'}"
    )
    assert _frozen(fortnight, "2026-01-05T09:30Z")
    assert not _frozen(fortnight, "2026-01-12T09:30Z")
    assert _frozen(fortnight, "2026-01-19T09:30Z")


def test_until_ends_the_recurrence_and_last_sunday_works() -> None:
    bundle = _recurring("FREQ=MONTHLY;BYDAY=-1SU;UNTIL=20261231", "10:00", "2h", "Europe/Berlin")
    assert _frozen(bundle, "2026-11-29T09:30Z")  # last Sunday of November, 10:30 CET
    assert not _frozen(bundle, "2026-11-22T09:30Z")
    assert _frozen(bundle, "2026-12-27T09:30Z")
    assert not _frozen(bundle, "2027-01-31T09:30Z")  # past UNTIL


def test_answers_stay_right_when_many_years_are_asked_about() -> None:
    bundle = _recurring("FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24", "12:00", "1h", "UTC")
    for year in (2026, *range(2030, 2040), 2026):  # more years than the memo keeps
        assert _frozen(bundle, f"{year}-12-24T12:30Z")
        assert not _frozen(bundle, f"{year}-12-24T13:00Z")


def test_a_recurrence_that_never_happens_is_never_active() -> None:
    never = _recurring("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "00:00", "24h", "UTC")
    assert not _frozen(never, "2030-02-28T12:00Z")


def test_window_spanning_new_year_is_found_from_the_next_year() -> None:
    bundle = _recurring("FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31", "20:00", "12h", "Asia/Kolkata")
    assert _frozen(bundle, "2027-01-01T02:00Z")  # 07:30 IST on Jan 1
    assert not _frozen(bundle, "2027-01-01T02:30Z")  # 08:00 IST


CALENDARS = "calendars: {au: [2026-12-25], in: [2026-01-26], de: [2026-03-29]}\n"


@pytest.mark.parametrize(
    ("calendar", "zone", "checks"),
    [
        (
            "au",
            "Australia/Sydney",
            [  # +11 in December: the day starts at 13:00 UTC the day before
                ("2026-12-24T12:59:59Z", False),
                ("2026-12-24T13:00Z", True),
                ("2026-12-25T12:59:59Z", True),
                ("2026-12-25T13:00Z", False),
            ],
        ),
        (
            "in",
            "Asia/Kolkata",
            [
                ("2026-01-25T18:29:59Z", False),
                ("2026-01-25T18:30Z", True),
                ("2026-01-26T18:29:59Z", True),
                ("2026-01-26T18:30Z", False),
            ],
        ),
        (
            "de",
            "Europe/Berlin",
            [  # the spring-forward day is 23 hours long
                ("2026-03-28T22:59:59Z", False),
                ("2026-03-28T23:00Z", True),
                ("2026-03-29T21:59:59Z", True),
                ("2026-03-29T22:00Z", False),
            ],
        ),
    ],
    ids=["Australia/Sydney", "Asia/Kolkata", "Europe/Berlin-DST-day"],
)
def test_holidays_cover_the_whole_local_day(
    calendar: str, zone: str, checks: list[tuple[str, bool]]
) -> None:
    bundle = _freeze(f"holidays: {{calendar: {calendar}, timezone: {zone}}}", calendars=CALENDARS)
    assert [(when, _frozen(bundle, when)) for when, _ in checks] == checks


def test_holiday_result_says_which_day_in_which_zone() -> None:
    bundle = _freeze("holidays: {calendar: au, timezone: Australia/Sydney}", calendars=CALENDARS)
    result = _result(bundle, "2026-12-24T13:00Z")
    assert dict(result.details) == {
        "window": "the holiday 2026-12-25 of calendar 'au'",
        "window_index": "0",
        "local_time": "Friday 2026-12-25 00:00 Australia/Sydney",
        "start": "2026-12-24T13:00:00Z",
        "end": "2026-12-25T13:00:00Z",
        "effect": "deny",
    }


def test_once_window_with_offsets_is_half_open() -> None:
    bundle = _freeze("once: {start: '2026-12-20T00:00:00+01:00', end: '2027-01-04T00:00:00+01:00'}")
    assert not _frozen(bundle, "2026-12-19T22:59:59Z")
    assert _frozen(bundle, "2026-12-19T23:00Z")
    assert _frozen(bundle, "2027-01-03T22:59:59Z")
    assert not _frozen(bundle, "2027-01-03T23:00Z")
    assert _result(bundle, "2026-12-24T10:00Z").details["window"] == (
        "the one-off window 2026-12-20T00:00:00+01:00 to 2027-01-04T00:00:00+01:00"
    )


ALWAYS = "once: {start: '2026-01-01T00:00:00Z', end: '2027-01-01T00:00:00Z'}"


def test_break_glass_passes_a_freeze_and_is_recorded() -> None:
    result = _result(_freeze(ALWAYS), "2026-06-01T00:00Z", break_glass=True)
    assert (result.verdict, result.reason) == (Verdict.ALLOW, "BREAK_GLASS")
    assert (
        result.details["window"]
        == "the one-off window 2026-01-01T00:00:00Z to 2027-01-01T00:00:00Z"
    )
    decision = evaluate(
        _freeze(ALWAYS),
        Proposal("agent.ping", "n", {}, {}, break_glass=True),
        _at("2026-06-01T00:00Z"),
        history=LOG,
    )
    assert explain(decision)[1] == (
        "allowed by freeze window 'freeze': break-glass override: Monday 2026-06-01 00:00 UTC "
        "is inside the one-off window 2026-01-01T00:00:00Z to 2027-01-01T00:00:00Z"
    )


def test_break_glass_is_refused_where_the_rule_says_so() -> None:
    bundle = _freeze(ALWAYS, extra="    break_glass: false\n")
    result = _result(bundle, "2026-06-01T00:00Z", break_glass=True)
    assert (result.verdict, result.reason) == (Verdict.DENY, "FROZEN")
    assert result.details["break_glass"] == "refused: this rule does not allow break-glass"


def test_freeze_effect_needs_approval_and_quiet_times() -> None:
    bundle = _freeze(ALWAYS, extra="    effect: needs_approval\n")
    result = _result(bundle, "2026-06-01T00:00Z")
    assert (result.verdict, result.reason) == (Verdict.NEEDS_APPROVAL, "FROZEN")
    quiet = _result(bundle, "2027-06-01T00:00Z", break_glass=True)
    assert (quiet.verdict, quiet.reason, dict(quiet.details)) == (
        Verdict.ALLOW,
        "NOT_FROZEN",
        {"windows": "1"},
    )


def test_the_first_active_window_decides() -> None:
    bundle = _freeze(f"{ALWAYS}\n      - {ALWAYS.replace('2026-01-01', '2025-01-01')}")
    assert _result(bundle, "2026-06-01T00:00Z").details["window_index"] == "0"
    assert _result(bundle, "2025-06-01T00:00Z").details["window_index"] == "1"
