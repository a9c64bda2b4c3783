"""CronJob schedules, as Kubernetes parses them: github.com/robfig/cron/v3's `ParseStandard`.

- Five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-6 or
  sun-sat), each a comma list of `*`/`?`, `N`, `N-M`, with an optional `/step` (`N/step` is `N-max/step`);
  names are case-insensitive. A `TZ=` or `CRON_TZ=` prefix names the zone (the validation refuses it in
  `spec.schedule`; the controller adds it from `spec.timeZone`, as its formatSchedule does).
- Descriptors: @yearly/@annually, @monthly, @weekly, @daily/@midnight, @hourly, and `@every <duration>`
  (Go's time.ParseDuration units; at least one second, rounded down to whole seconds).
- Day matching as cron's: when day of month or day of week is `*` (or `?`, or starts with `*` without a
  step above 1) both must match, else either.
- `Schedule.next(t)`: the first activation strictly after `t` (whole minutes; @every: t + the interval,
  rounded down to the second), in the schedule's zone (UTC by default); None when there is none within
  five years (robfig's zero time, e.g. `0 0 30 2 *`).

Errors are robfig's messages (`expected exactly 5 fields, found 6: [...]`, `end of range (60) above maximum
(59): 60`, `unrecognized descriptor: @often`), which the API server puts in its 422 verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

STAR = 1 << 63


class CronError(ValueError):
    """A schedule that does not parse; the message is robfig/cron's."""


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int]


_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS = (
    _Bounds(0, 59, {}),  # minute
    _Bounds(0, 23, {}),  # hour
    _Bounds(1, 31, {}),  # day of month
    _Bounds(1, 12, _MONTHS),
    _Bounds(0, 6, _DAYS),  # day of week
)
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(r"(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+")
HORIZON = timedelta(days=5 * 366)


def _must_int(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if value < 0:
        raise CronError(f"negative number ({value}) not allowed: {text}")
    return value


def _int_or_name(text: str, names: dict[str, int]) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    return _must_int(text)


def _range(expr: str, bounds: _Bounds) -> int:
    """robfig's getRange: the bits of one comma-separated term."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    extra = 0
    if low_and_high[0] in ("*", "?"):
        start, end, extra = bounds.low, bounds.high, STAR
    else:
        start = _int_or_name(low_and_high[0], bounds.names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _int_or_name(low_and_high[1], bounds.names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _must_int(range_and_step[1])
        if single:
            end = bounds.high
        if step > 1:
            extra = 0
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    bits = 0
    for value in range(start, end + 1, step):
        bits |= 1 << value
    return bits | extra


def _field(text: str, bounds: _Bounds) -> int:
    bits = 0
    for term in text.split(","):
        bits |= _range(term, bounds)
    return bits


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds (what `@every` takes): e.g. 90s, 1h30m, 1.5h."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0.0
    if not _DURATION.fullmatch(body):
        raise CronError(f'failed to parse duration @every {text}: time: invalid duration "{text}"')
    total = sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(body))
    return -total if text.startswith("-") else total


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the five fields' bits, or a constant delay (`@every`)."""

    minute: int = 0
    hour: int = 0
    dom: int = 0
    month: int = 0
    dow: int = 0
    zone: tzinfo = UTC
    every: float = 0.0  # seconds, for @every

    def _day_matches(self, t: datetime) -> bool:
        dom = bool(1 << t.day & self.dom)
        dow = bool(1 << ((t.weekday() + 1) % 7) & self.dow)
        if self.dom & STAR or self.dow & STAR:
            return dom and dow
        return dom or dow

    def next(self, after: datetime) -> datetime | None:
        """The first activation strictly after `after` (an aware datetime), in the schedule's zone."""
        if self.every:
            return (after + timedelta(seconds=self.every)).replace(microsecond=0)
        local = after.astimezone(self.zone).replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
        limit = local + HORIZON
        while local < limit:
            if not 1 << local.month & self.month:
                local = (local.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(local):
                local = local.replace(hour=0, minute=0) + timedelta(days=1)
            elif not 1 << local.hour & self.hour:
                local = local.replace(minute=0) + timedelta(hours=1)
            elif not 1 << local.minute & self.minute:
                local += timedelta(minutes=1)
            else:
                found = local.replace(tzinfo=self.zone)
                if found.astimezone(UTC) > after.astimezone(UTC):
                    return found
                local += timedelta(minutes=1)
        return None


def load_zone(name: str) -> tzinfo:
    """Go's time.LoadLocation: "" and "UTC" are UTC, "Local" the machine's zone, else the IANA database."""
    if name in ("", "UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name}") from None


def parse_standard(spec: str) -> Schedule:
    """robfig/cron/v3's ParseStandard."""
    if not spec:
        raise CronError("empty spec string")
    zone: tzinfo = UTC
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        zone = load_zone(head.split("=", 1)[1])
        spec = spec.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            seconds = parse_duration(spec[len("@every ") :])
            if seconds < 0:
                raise CronError(f"failed to parse duration {spec}: negative duration")
            return Schedule(zone=zone, every=max(1.0, float(int(seconds))))
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    minute, hour, dom, month, dow = (_field(text, bounds) for text, bounds in zip(fields, _FIELDS, strict=True))
    return Schedule(minute, hour, dom, month, dow, zone)
