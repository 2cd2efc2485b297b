"""The ``dynacron`` command line.

Commands::

    dynacron schedule TASK_TYPE (--at ISO | --every SECONDS | --cron EXPR | --rrule RULE |
                                 --when TEXT) [--tz TZ] ...
    dynacron schedule --target TARGET [--method M] [--header N:V] [--secret REF] (--at|...) ...
    dynacron list | show TASK_ID | runs TASK_ID
    dynacron cancel | pause | resume | trigger TASK_ID
    dynacron update TASK_ID [--payload ...] [trigger] [--timeout ...] | delete TASK_ID
    dynacron next (--at ISO | --every SECONDS | --cron EXPR | --rrule RULE | --when TEXT)
                  [--tz TZ] [-n 5] [--after ISO]
    dynacron dlq list | dlq redrive (--all | TASK_ID RUN_ID)
    dynacron local [--port 8765] [--handlers mod[,mod]] [--demo] [--duration S] [--shards N]
                   [--pollers N]

Configuration comes from the group options or the environment: ``--table`` (DYNACRON_TABLE),
``--queue-url`` (DYNACRON_QUEUE_URL), ``--dlq-url`` (DYNACRON_DLQ_URL), ``--endpoint-url``
(AWS_ENDPOINT_URL), ``--region`` (AWS_REGION / AWS_DEFAULT_REGION). Nothing talks to AWS until a
command needs it (``next`` and ``local`` never do).

Every read command takes ``--json``: datetimes as ISO 8601 (UTC, ``Z``), enums as their values.
Date-times on input must carry an offset or ``Z``. Durations are seconds, or a number with a unit
(``90``, ``1.5``, ``90s``, ``5m``, ``2h``, ``1d``, ``1h30m``).

Errors are one line on stderr, ``error: ...``, never a traceback (set ``DYNACRON_DEBUG=1`` to
see one for unexpected failures).

Exit codes:

- 0: ok
- 1: unexpected failure
- 2: usage or validation error (bad input; nothing was written)
- 3: not found (task or run)
- 4: invalid state (e.g. resuming a cancelled task, redriving a run that is not dead)
- 5: cannot reach AWS, AWS refused the request, or configuration missing (no table, no queue)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import traceback
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

import click

from .errors import (
    ConfigurationError,
    DynacronError,
    InvalidStateError,
    RunNotFound,
    TaskNotFound,
    ValidationError,
)
from .targets import Target
from .triggers import At, Cron, Every, Trigger
from .types import MisfirePolicy, RetryPolicy, RunStatus, TaskStatus

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INVALID_STATE = 4
EXIT_UNAVAILABLE = 5

EXIT_CODES_EPILOG = """\b
Exit codes:
  0  ok
  1  unexpected failure
  2  usage or validation error (bad input; nothing was written)
  3  not found (task or run)
  4  invalid state (e.g. resuming a cancelled task)
  5  cannot reach AWS / configuration missing"""

#: SDK ValidationError fields → the CLI option a user typed.
_FIELD_OPTIONS = {
    "task_type": "TASK_TYPE",
    "task_id": "--task-id",
    "payload": "--payload",
    "trigger.when": "--at",
    "trigger.interval": "--every",
    "trigger.expr": "--cron",
    "trigger.tz": "--tz",
    "trigger.rule": "--rrule",
    "when": "--when",
    "trigger.start_at": "--start-at",
    "trigger.end_at": "--end-at",
    "retry.max_attempts": "--max-attempts",
    "retry.backoff_base": "--backoff-base",
    "retry.backoff_max": "--backoff-max",
    "timeout": "--timeout",
    "misfire": "--misfire",
    "target": "--target",
    **{
        f"target.{name}": "--target"
        for name in (
            "url",
            "function_arn",
            "queue_url",
            "group_id",
            "topic_arn",
            "bus_name",
            "detail_type",
            "source",
            "arn",
        )
    },
    "target.method": "--method",
    "target.headers": "--header",
    "target.secret": "--secret",
}


# --- parameter types -----------------------------------------------------------------------


class _Instant(click.ParamType):
    """An ISO 8601 date-time with an offset or ``Z``; naive input is refused."""

    name = "ISO8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if text.endswith("z"):
            text = text[:-1] + "Z"
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 date-time (e.g. 2026-05-01T09:00:00Z)", param, ctx
            )
        if when.tzinfo is None or when.utcoffset() is None:
            self.fail(f"{value!r} has no UTC offset: add Z or +HH:MM (e.g. {text}Z)", param, ctx)
        return when


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")


class _Duration(click.ParamType):
    """Seconds (``90``, ``1.5``) or a number with units (``90s``, ``5m``, ``1h30m``, ``1d``)."""

    name = "SECONDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                self.fail(
                    f"{value!r} is not a duration (seconds like 90 or 1.5, or 90s, 5m, 2h, 1d)",
                    param,
                    ctx,
                )
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
        if not math.isfinite(seconds) or seconds < 0:
            self.fail(f"{value!r} must be a finite, non-negative number of seconds", param, ctx)
        return seconds


INSTANT = _Instant()
DURATION = _Duration()


# --- configuration -------------------------------------------------------------------------


@dataclasses.dataclass
class _Config:
    """The group options; builds the Scheduler only when a command needs AWS."""

    table: str | None = None
    queue_url: str | None = None
    dlq_url: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    _scheduler: Any = None

    def options(self) -> tuple[str | None, ...]:
        return (self.table, self.queue_url, self.dlq_url, self.endpoint_url, self.region)

    def settings(self) -> Any:
        from .settings import Settings

        return Settings.from_env(
            table_name=self.table,
            queue_url=self.queue_url,
            dlq_url=self.dlq_url,
            endpoint_url=self.endpoint_url,
            region=self.region,
            # A person is waiting: fail fast on an unreachable endpoint instead of retrying.
            max_retries=int(os.environ.get("DYNACRON_MAX_RETRIES", "2")),
        )

    def scheduler(self) -> Any:
        if self._scheduler is None:
            settings = self.settings()
            if not settings.table_name:
                raise ConfigurationError("no table: pass --table or set DYNACRON_TABLE")
            from .sdk import Scheduler

            self._scheduler = Scheduler(settings=settings)
        return self._scheduler

    def require_dlq(self) -> str:
        url = self.scheduler().settings.dlq_url
        if not url:
            raise ConfigurationError("no DLQ: pass --dlq-url or set DYNACRON_DLQ_URL")
        return url


# --- error handling ------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _aws_message(exc: BaseException) -> str | None:
    """A one-line description if ``exc`` (or its cause) is a botocore/PynamoDB error."""
    from botocore.exceptions import BotoCoreError, ClientError

    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, ClientError):
            err = current.response.get("Error", {})
            code = err.get("Code", "ClientError")
            op = getattr(current, "operation_name", "") or ""
            return f"AWS refused {op or 'the request'}: {code}: {err.get('Message', '')}".strip()
        if isinstance(current, BotoCoreError):
            return f"cannot reach AWS: {current}"
        nxt = getattr(current, "cause", None) or current.__cause__ or current.__context__
        current = nxt if isinstance(nxt, BaseException) else None
        seen += 1
    if type(exc).__module__.split(".")[0] == "pynamodb":  # by name: only the storage imports it
        return f"DynamoDB: {exc}"
    return None


def _classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception raised by a command."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return EXIT_OK, ""
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return EXIT_USAGE, exc.format_message() + hint
    if isinstance(exc, click.ClickException):
        return EXIT_USAGE, exc.format_message()
    if isinstance(exc, click.Abort):
        return EXIT_FAILURE, "aborted"
    if isinstance(exc, ValidationError):
        return EXIT_USAGE, f"{_FIELD_OPTIONS.get(exc.field, exc.field)}: {exc.message}"
    if isinstance(exc, TaskNotFound | RunNotFound):
        return EXIT_NOT_FOUND, str(exc)
    if isinstance(exc, InvalidStateError):
        return EXIT_INVALID_STATE, str(exc)
    if isinstance(exc, ConfigurationError):
        return EXIT_UNAVAILABLE, str(exc)
    aws = _aws_message(exc)
    if aws is not None:
        return EXIT_UNAVAILABLE, aws
    if isinstance(exc, DynacronError):
        return EXIT_FAILURE, str(exc)
    return EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc}"


class _Group(click.Group):
    """The top-level group: turns every failure into one ``error:`` line and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help())
            code = EXIT_OK
        except Exception as exc:
            code, message = _classify(exc)
            if code == EXIT_FAILURE and os.environ.get("DYNACRON_DEBUG"):
                traceback.print_exc()
            click.echo(f"error: {_one_line(message)}", err=True)
        if standalone_mode:
            sys.exit(code)
        return code


# --- output --------------------------------------------------------------------------------


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    spec = "milliseconds" if when.microsecond else "seconds"
    return when.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _local_iso(when: datetime, zone: Any) -> str:
    local = when.astimezone(zone)
    spec = "milliseconds" if local.microsecond else "seconds"
    return local.isoformat(timespec=spec)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}s"


def _trigger_json(trigger: Trigger) -> dict[str, Any]:
    data: dict[str, Any] = {"type": trigger.to_dict()["type"]}
    for f in dataclasses.fields(trigger):  # type: ignore[arg-type]
        data[f.name] = _jsonable(getattr(trigger, f.name))
    data["description"] = trigger.describe()
    return data


def _jsonable(value: Any) -> Any:
    """Dataclasses → dicts, datetimes → ISO 8601, enums → values, recursively."""
    if isinstance(value, Trigger):
        return _trigger_json(value)
    if isinstance(value, Target):
        return {**value.to_dict(), "description": value.describe()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        lateness = getattr(value, "lateness", None)
        if isinstance(lateness, timedelta):
            data["lateness_seconds"] = lateness.total_seconds()
        elif "started_at" in data and "scheduled_for" in data:
            data["lateness_seconds"] = None
        return data
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):  # an RRule's excluded local date
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), indent=2, ensure_ascii=False, sort_keys=False))


def _console(width: int | None = None) -> Any:
    from rich.console import Console

    console = Console(stderr=False, highlight=False, markup=False, emoji=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        # Piped or captured: do not squeeze tables into 80 columns (unless asked to).
        console = Console(
            stderr=False, highlight=False, markup=False, emoji=False, width=width or 200
        )
    elif width is not None and console.width > width:
        console = Console(stderr=False, highlight=False, markup=False, emoji=False, width=width)
    return console


#: Tables of triggers (list, show, next) wrap their descriptions to stay within a terminal.
_NARROW = 80


def _text(value: Any) -> Any:
    from rich.text import Text

    if value is None:
        return Text("-")
    if isinstance(value, datetime):
        return Text(_iso(value) or "-")
    if isinstance(value, Enum):
        return Text(str(value.value))
    return Text(str(value))


def _table(
    title: str | None,
    columns: Iterable[Any],
    rows: Iterable[Iterable[Any]],
    wide: bool = False,
) -> None:
    """A table fitted to the terminal (``cli_tables.render``); ``wide``: every column in full."""
    from .cli_tables import render

    render(_console(), title, columns, ([_cell_text(v) for v in row] for row in rows), wide=wide)


def _cell_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    return value


_wide_option = click.option(
    "--wide", is_flag=True, help="Every column, in full, whatever the width."
)
_tz_option = click.option(
    "--tz",
    "tz_name",
    metavar="TZ",
    help="Show times in this IANA zone [env TZ; else the task's own zone; else UTC].",
)


def _display_zone(tz_name: str | None, task: Any = None) -> Any:
    """--tz, else $TZ, else the task's own zone (its Cron's), else UTC."""
    from .cli_tables import env_zone, task_zone

    if tz_name:
        return _zone(tz_name)
    return env_zone() or (task_zone(task) if task is not None else UTC)


def _kv(title: str | None, pairs: Iterable[tuple[str, Any]], width: int | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in pairs:
        table.add_row(_text(key), _text(value))
    _console(width).print(table)


def _compact(value: Any) -> str:
    return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)


def _show_task(task: Any, title: str | None = None, zone: Any = None) -> None:
    from .cli_tables import when

    retry = task.retry
    zone = zone or _display_zone(None, task)

    def at(value: datetime | None) -> str:
        return when(value, zone, with_zone=True)

    _kv(
        title or f"task {task.task_id}",
        [
            ("task_id", task.task_id),
            ("task_type", task.task_type),
            ("target", _target_line(task.target)),
            ("status", task.status),
            ("trigger", task.trigger.describe()),
            ("trigger_spec", _compact(_trigger_spec(task.trigger))),
            ("next_fire_at", at(task.next_fire_at)),
            ("payload", _compact(task.payload)),
            (
                "retry",
                f"max_attempts={retry.max_attempts} backoff_base={retry.backoff_base:g}s "
                f"backoff_max={retry.backoff_max:g}s jitter={retry.jitter:g}",
            ),
            ("timeout", _seconds(task.timeout)),
            ("misfire", task.misfire),
            ("lane", task.lane),
            ("expire_after", _seconds(task.expire_after) if task.expire_after else None),
            ("created_at", at(task.created_at)),
            ("updated_at", at(task.updated_at)),
            ("version", task.version),
        ],
        width=_NARROW,
    )


def _target_line(target: Any) -> str | None:
    """The target and what goes with it (headers by name only: values may be tokens)."""
    if target is None:
        return None
    line = target.describe()
    extras = target.to_dict()
    if extras.get("headers"):
        line += f" headers={','.join(sorted(extras['headers']))}"
    for key in ("group_id", "secret", "detail_type", "source"):
        if extras.get(key):
            line += f" {key}={extras[key]}"
    return line


def _trigger_spec(trigger: Trigger) -> dict[str, Any]:
    """The trigger as stored, times as ISO 8601: the exact expression behind describe()."""
    spec = trigger.to_dict()
    for key in ("when", "start_at", "end_at"):
        if key in spec:
            spec[key] = _iso(getattr(trigger, key))
    return spec


def _run_row(run: Any, zone: Any = UTC, short: bool = False) -> list[Any]:
    from .cli_tables import when

    def at(value: datetime | None) -> str:
        text = when(value, zone)
        return text[5:] if short and value is not None else text  # drop "YYYY-"

    late = run.lateness
    outcome = run.error or ""  # a retried run that succeeded keeps its failed attempt's error
    if run.result is not None and (run.status.value == "succeeded" or not run.error):
        outcome = _compact(run.result)
    return [
        run.run_id,
        run.status,
        at(run.scheduled_for),
        f"{run.attempt}/{run.max_attempts}",
        None if late is None else f"{late.total_seconds():.3f}s",
        outcome,
        at(run.started_at),
        at(run.finished_at),
        "yes" if run.manual else "",
    ]


def _run_columns(time_width: int = 19) -> tuple[Any, ...]:
    from .cli_tables import Col

    return (
        Col("run_id", 0, 15),
        Col("status", 0, 9),
        Col("scheduled", 1, time_width),
        Col("try", 1, 3, justify="right"),
        Col("lateness", 2, 6, justify="right"),
        Col("result / error", 3, 12, wrap=True),
        Col("started", 6, time_width),
        Col("finished", 5, time_width),
        Col("manual", 7, 6),
    )


def _show_run(run: Any, title: str) -> None:
    _kv(
        title,
        [
            ("task_id", run.task_id),
            ("run_id", run.run_id),
            ("status", run.status),
            ("scheduled_for", run.scheduled_for),
            ("attempt", f"{run.attempt}/{run.max_attempts}"),
            ("manual", run.manual),
            ("error", run.error),
        ],
    )


# --- triggers ------------------------------------------------------------------------------


def _build_trigger(
    at: datetime | None,
    every: float | None,
    cron: str | None,
    tz: str | None,
    start_at: datetime | None,
    end_at: datetime | None,
    *,
    tz_for_display: bool = False,
) -> Trigger:
    meta = click.get_current_context().meta
    phrase, rule = meta.get("dynacron.when"), meta.get("dynacron.rrule")
    options = (("--at", at), ("--every", every), ("--cron", cron), ("--when", phrase),
               ("--rrule", rule))  # fmt: skip
    given = [n for n, v in options if v is not None]
    if not given:
        raise click.UsageError(
            "give one trigger: --at ISO8601, --every SECONDS, --cron EXPR, --rrule RULE or "
            "--when TEXT"
        )
    if len(given) > 1:
        raise click.UsageError(f"give exactly one trigger option, got {' and '.join(given)}")
    if at is not None and (start_at is not None or end_at is not None):
        raise click.UsageError("--start-at and --end-at apply to --every and --cron, not --at")
    if tz is not None and (at is not None or every is not None) and not tz_for_display:
        raise click.UsageError("--tz applies to --cron, --rrule and --when only")
    if phrase is not None or rule is not None:
        return _calendar_trigger(phrase, rule, tz or "UTC", start_at, end_at)
    if at is not None:
        return At(at)
    if every is not None:
        return Every(every, start_at=start_at, end_at=end_at)
    assert cron is not None
    return Cron(cron, tz=tz or "UTC", start_at=start_at, end_at=end_at)


def _calendar_trigger(
    phrase: str | None,
    rule: str | None,
    tz: str,
    start_at: datetime | None,
    end_at: datetime | None,
) -> Trigger:
    """The trigger of --when TEXT (its window from --start-at/--end-at) or --rrule RULE."""
    if rule is not None:
        from .recurrence import RRule

        return RRule(rule, tz=tz, start_at=start_at, end_at=end_at)
    from .phrases import when

    assert phrase is not None
    trigger = when(phrase, tz=tz)
    if start_at is None and end_at is None:
        return trigger
    if isinstance(trigger, At):
        raise click.UsageError("--start-at and --end-at do not apply to a one-off --when")
    return dataclasses.replace(trigger, start_at=start_at, end_at=end_at)  # type: ignore[type-var]


def _remember(key: str) -> Any:
    """A callback that keeps an option's value in the context (no new parameter for every
    command that takes the trigger options)."""

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            ctx.meta[key] = value
        return value

    return store


def _zone(name: str) -> ZoneInfo:
    from .triggers import zone

    try:
        return zone(name)
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint="'--tz'") from None


def _trigger_options(func: Any) -> Any:
    options = [
        click.option("--at", "at", type=INSTANT, help="Fire once at this instant (offset or Z)."),
        click.option("--every", type=DURATION, help="Fire every SECONDS (90, 5m, 1h30m)."),
        click.option("--cron", "cron", metavar="EXPR", help="5-field cron expression."),
        click.option(
            "--rrule", metavar="RULE", expose_value=False, callback=_remember("dynacron.rrule"),
            help="RFC 5545 rule, e.g. 'FREQ=WEEKLY;BYDAY=TU;BYHOUR=9'.",
        ),
        click.option(
            "--when", metavar="TEXT", expose_value=False, callback=_remember("dynacron.when"),
            help="English, e.g. 'every other tuesday at 9:34'.",
        ),
        click.option(
            "--tz", metavar="TZ", help="IANA time zone of --cron/--rrule/--when (default UTC)."
        ),
        click.option("--start-at", type=INSTANT, help="First fire not before; DTSTART of --rrule."),
        click.option("--end-at", type=INSTANT, help="No fire after (not with --at)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# --- the group -----------------------------------------------------------------------------


@click.group(
    cls=_Group,
    epilog=EXIT_CODES_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--table", metavar="NAME", help="DynamoDB table [env DYNACRON_TABLE].")
@click.option("--queue-url", metavar="URL", help="Work queue [env DYNACRON_QUEUE_URL].")
@click.option("--dlq-url", metavar="URL", help="Dead-letter queue [env DYNACRON_DLQ_URL].")
@click.option("--endpoint-url", metavar="URL", help="AWS endpoint [env AWS_ENDPOINT_URL].")
@click.option("--region", metavar="REGION", help="AWS region [env AWS_REGION].")
@click.version_option(package_name="dynacron", prog_name="dynacron")
@click.pass_context
def cli(
    ctx: click.Context,
    table: str | None,
    queue_url: str | None,
    dlq_url: str | None,
    endpoint_url: str | None,
    region: str | None,
) -> None:
    """dynacron: one-time, interval and cron tasks on DynamoDB + SQS + Lambda."""
    config = _Config(
        table=table, queue_url=queue_url, dlq_url=dlq_url, endpoint_url=endpoint_url, region=region
    )
    # A caller that embeds the CLI (tests) may pass obj=_Config(...) with the same options to
    # reuse its Scheduler and AWS clients across invocations.
    if not (isinstance(ctx.obj, _Config) and ctx.obj.options() == config.options()):
        ctx.obj = config


pass_config = click.make_pass_decorator(_Config)


# --- schedule ------------------------------------------------------------------------------


def _payload(text: str | None, file: Any) -> dict[str, Any]:
    if text is not None and file is not None:
        raise click.UsageError("give --payload or --payload-file, not both")
    option = "--payload" if file is None else "--payload-file"
    if text is None and file is None:
        return {}
    raw = text if text is not None else file.read()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint=f"'{option}'") from None
    if not isinstance(value, dict):
        raise click.BadParameter(
            f"must be a JSON object, got {type(value).__name__}", param_hint=f"'{option}'"
        )
    return value


def _target_options(func: Any) -> Any:
    options = [
        click.option(
            "--target",
            metavar="TARGET",
            help="Run a target instead of a handler: lambda:ARN, sqs:URL[?group_id=G], sns:ARN, "
            "eventbus:BUS?source=S&detail_type=D, states:ARN, https://URL.",
        ),
        click.option("--method", help="HTTP target: method [POST]."),
        click.option("--header", multiple=True, metavar="NAME:VALUE", help="HTTP target header."),
        click.option(
            "--secret", metavar="REF", help="HTTP target: signing secret (ssm:NAME, ARN, ...)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _lane_options(func: Any) -> Any:
    """``--lane``, ``--spread``, ``--limit`` (validated by schedule(), which knows the configured
    lanes and limits)."""
    options = [
        click.option(
            "--lane", metavar="LANE", help="Lane (queue) the runs go to: default, critical, bulk."
        ),
        click.option(
            "--spread", type=DURATION, help="Start each occurrence up to this much later (≤ 900s)."
        ),
        click.option("--limit", metavar="NAME", help="A limit made with `dynacron limits set`."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _what_runs(
    task_type: str | None,
    target: str | None,
    method: str | None,
    header: tuple[str, ...],
    secret: str | None,
) -> Any:
    """TASK_TYPE or --target (exactly one); the HTTP options only go with a target."""
    from .targets import parse_target

    if (task_type is None) == (target is None):
        raise click.UsageError("give TASK_TYPE or --target, exactly one")
    if target is None:
        if method or header or secret:
            raise click.UsageError("--method, --header and --secret go with --target")
        return task_type
    headers = {}
    for item in header:
        name, sep, value = item.partition(":")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME:VALUE", param_hint="'--header'")
        headers[name.strip()] = value.strip()
    return parse_target(target, method=method or "POST", headers=headers or None, secret=secret)


@cli.command(epilog=EXIT_CODES_EPILOG)
@click.argument("task_type", required=False)
@click.option("--payload", "payload_text", metavar="JSON", help="Payload, a JSON object.")
@click.option(
    "--payload-file", type=click.File("r", encoding="utf-8"), help="Payload file (- = stdin)."
)
@_trigger_options
@click.option("--task-id", metavar="ID", help="Idempotency: same id + same arguments = same task.")
@click.option(
    "--max-attempts", type=int, help=f"Attempts incl. the first [{RetryPolicy().max_attempts}]."
)
@click.option(
    "--backoff-base", type=DURATION, help=f"First retry delay [{RetryPolicy().backoff_base:g}s]."
)
@click.option(
    "--backoff-max", type=DURATION, help=f"Longest retry delay [{RetryPolicy().backoff_max:g}s]."
)
@click.option("--timeout", type=DURATION, default=60.0, show_default=True, help="Per attempt.")
@click.option(
    "--misfire",
    type=click.Choice([p.value for p in MisfirePolicy]),
    default=MisfirePolicy.RUN_ONCE.value,
    show_default=True,
)
@_target_options
@_lane_options
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@pass_config
def schedule(
    cfg: _Config,
    task_type: str,
    payload_text: str | None,
    payload_file: Any,
    at: datetime | None,
    every: float | None,
    cron: str | None,
    tz: str | None,
    start_at: datetime | None,
    end_at: datetime | None,
    task_id: str | None,
    max_attempts: int | None,
    backoff_base: float | None,
    backoff_max: float | None,
    timeout: float,
    misfire: str,
    as_json: bool,
    target: str | None = None,
    method: str | None = None,
    header: tuple[str, ...] = (),
    secret: str | None = None,
    **lanes_limits: Any,
) -> None:
    """Create a task: one of --at, --every, --cron, --rrule, --when; TASK_TYPE or --target."""
    runs_what = _what_runs(task_type, target, method, header, secret)
    payload = _payload(payload_text, payload_file)
    trigger = _build_trigger(at, every, cron, tz, start_at, end_at)
    default = RetryPolicy()
    retry = RetryPolicy(
        max_attempts=default.max_attempts if max_attempts is None else max_attempts,
        backoff_base=default.backoff_base if backoff_base is None else backoff_base,
        backoff_max=default.backoff_max if backoff_max is None else backoff_max,
    )
    task = cfg.scheduler().schedule(
        runs_what,
        payload,
        trigger=trigger,
        task_id=task_id,
        retry=retry,
        timeout=timeout,
        misfire=misfire,
        **{k: v for k, v in lanes_limits.items() if v is not None},
    )
    if as_json:
        _print_json(task)
    else:
        _show_task(task, title=f"scheduled task {task.task_id}")


# --- read commands -------------------------------------------------------------------------


@cli.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in TaskStatus]), help="Only this status."
)
@click.option("--type", "task_type", metavar="TASK_TYPE", help="Only this task type.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_wide_option
@_tz_option
@pass_config
def list_cmd(
    cfg: _Config,
    status: str | None,
    task_type: str | None,
    as_json: bool,
    wide: bool,
    tz_name: str | None,
) -> None:
    """List tasks (a table scan, for operators). Times in each task's zone unless --tz/TZ."""
    from .cli_tables import Col, plural, when

    tasks = sorted(
        cfg.scheduler().list(status=status, task_type=task_type), key=lambda t: t.created_at
    )
    if as_json:
        _print_json(tasks)
        return
    columns = (
        Col("task_id", 0, 10),
        Col("task_type", 1, 6),
        Col("status", 0, 9),
        Col("trigger", 2, 12, wrap=True),
        Col("next fire", 1, 24),
        Col("created", 4, 24),
    )
    _table(
        plural(len(tasks), "task"),
        columns,
        (
            (
                t.task_id,
                t.task_type,
                t.status,
                t.trigger.describe(),
                when(t.next_fire_at, _display_zone(tz_name, t), with_zone=True),
                when(t.created_at, _display_zone(tz_name, t), with_zone=True),
            )
            for t in tasks
        ),
        wide=wide,
    )


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_tz_option
@pass_config
def show(cfg: _Config, task_id: str, as_json: bool, tz_name: str | None) -> None:
    """Show one task (times in its own zone unless --tz/TZ)."""
    task = cfg.scheduler().get(task_id)
    if as_json:
        _print_json(task)
    else:
        _show_task(task, zone=_display_zone(tz_name, task))


@cli.command()
@click.argument("task_id", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--status", "run_status", type=click.Choice([s.value for s in RunStatus]),
              help="Only runs in this status (without TASK_ID: across every task).")
@click.option("--since", type=DURATION,
              help="Only runs scheduled or finished this long ago or later (1h, 30m).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --follow: one a line).")
@click.option("--follow", "-f", is_flag=True, help="Then print each run as it finishes.")
@click.option("--timeout", "follow_s", type=DURATION, help="Stop following after this long.")
@click.option("--count", "follow_n", type=click.IntRange(min=1), help="Stop after N runs.")
@_wide_option
@_tz_option
@pass_config
def runs(
    cfg: _Config,
    task_id: str | None,
    limit: int,
    run_status: str | None,
    since: float | None,
    as_json: bool,
    follow: bool,
    follow_s: float | None,
    follow_n: int | None,
    wide: bool,
    tz_name: str | None,
) -> None:
    """A task's runs, newest first; --follow prints each run as it finishes (Ctrl-C stops).

    Without TASK_ID, --status and/or --since list runs across every task (a bounded table
    Scan, billed for every item it reads: see the README)."""
    if (follow_s is not None or follow_n is not None) and not follow:
        raise click.UsageError("--timeout and --count apply to --follow")
    if task_id is None or run_status is not None or since is not None:
        from .cli_history import filtered_runs

        filtered_runs(cfg, task_id, limit, run_status, since, as_json, follow, wide, tz_name)
        return
    found = cfg.scheduler().runs(task_id, limit=limit)
    if follow:
        _follow(cfg.scheduler(), task_id, found, as_json, follow_s, follow_n)
        return
    if as_json:
        _print_json(found)
        return
    from .cli_tables import plural, zone_name

    zone = _display_zone(tz_name, cfg.scheduler().get(task_id))
    years = {
        t.astimezone(zone).year
        for r in found
        for t in (r.scheduled_for, r.started_at, r.finished_at)
        if t is not None
    }
    # Within one year the year is said once, in the title: five more characters for results.
    short = len(years) == 1 and not wide
    where = zone_name(zone) + (f", {years.pop()}" if short else "")
    _table(
        f"{plural(len(found), 'run')} of {task_id}, newest first · times in {where}",
        _run_columns(14 if short else 19),
        (_run_row(r, zone, short) for r in found),
        wide=wide,
    )


def _follow(
    scheduler: Any,
    task_id: str,
    shown: list[Any],
    as_json: bool,
    timeout_s: float | None,
    count: int | None,
) -> None:
    """Print runs of ``task_id`` as they finish, oldest finish first, until time or count.

    Polls the task's newest runs once a second (one GetItem and one Query of 25 items), the
    same read as ``Scheduler.wait`` without a run id; it keeps its own set of runs seen so that
    none finishing between two polls is missed.
    """
    from .sdk import WAIT_WINDOW

    seen = {r.run_id for r in shown if r.status.terminal}
    clock = scheduler.clock
    end = None if timeout_s is None else clock.now() + timedelta(seconds=timeout_s)
    printed = 0
    if not as_json:
        click.echo(f"following {task_id}: each run as it finishes (Ctrl-C to stop)")
    try:
        while count is None or printed < count:
            fresh = [
                r
                for r in scheduler.runs(task_id, limit=WAIT_WINDOW)
                if r.status.terminal and r.run_id not in seen
            ]
            for run in sorted(fresh, key=lambda r: (r.finished_at or r.scheduled_for, r.run_id)):
                seen.add(run.run_id)
                click.echo(json.dumps(_jsonable(run)) if as_json else _run_line(run))
                printed += 1
                if count is not None and printed >= count:
                    return
            if end is not None and clock.now() >= end:
                return
            clock.sleep(1.0 if end is None else min(1.0, (end - clock.now()).total_seconds()))
    except KeyboardInterrupt:
        return


def _run_line(run: Any) -> str:
    """One finished run on one line: time, id, status, attempts, lateness, result or error."""
    late = run.lateness
    outcome = run.error if run.error else _compact(run.result) if run.result is not None else ""
    parts = [
        _iso(run.finished_at) or "-",
        run.run_id,
        run.status.value,
        f"attempt {run.attempt}/{run.max_attempts}",
        "-" if late is None else f"late {late.total_seconds():.3f}s",
        _one_line(outcome)[:200],
    ]
    return "  ".join(p for p in parts if p)


# --- state changes -------------------------------------------------------------------------


def _change_command(name: str, verb: str, doc: str) -> None:
    @cli.command(name, help=doc)
    @click.argument("task_id")
    @click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
    @pass_config
    def command(cfg: _Config, task_id: str, as_json: bool) -> None:
        task = getattr(cfg.scheduler(), name)(task_id)
        if as_json:
            _print_json(task)
            return
        nxt = f"; next fire {_iso(task.next_fire_at)}" if task.next_fire_at else ""
        click.echo(f"task {task.task_id} {verb}: status {task.status.value}{nxt}")


_change_command("pause", "paused", "Pause a task: no occurrence fires until resumed.")
_change_command(
    "resume",
    "resumed",
    "Resume a paused task at its next future fire (missed ones are not replayed).",
)
_change_command("cancel", "cancelled", "Cancel a task for good.")


@cli.command("trigger")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@pass_config
def trigger_cmd(cfg: _Config, task_id: str, as_json: bool) -> None:
    """Run a task once now, outside its trigger (also when paused)."""
    run = cfg.scheduler().trigger_now(task_id)
    if as_json:
        _print_json(run)
    else:
        _show_run(run, f"new run of {task_id}")


# --- next ----------------------------------------------------------------------------------


@cli.command("next")
@_trigger_options
@click.option("-n", "--count", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--after", type=INSTANT, help="Preview as if created at this instant [now].")
@click.option("--spread", type=DURATION, help="Show each fire's spread offset (needs --task-id).")
@click.option("--task-id", metavar="ID", help="The task whose spread offsets to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def next_cmd(
    at: datetime | None,
    every: float | None,
    cron: str | None,
    tz: str | None,
    start_at: datetime | None,
    end_at: datetime | None,
    count: int,
    after: datetime | None,
    as_json: bool,
    spread: float | None = None,
    task_id: str | None = None,
) -> None:
    """The next fire times of a trigger, at or after --after (no AWS needed).

    Shown in the trigger's time zone (--tz; for --at/--every it only picks the display zone)
    and in UTC.
    """
    trigger = _build_trigger(at, every, cron, tz, start_at, end_at, tz_for_display=True)
    zone: Any = _zone(tz) if tz else UTC
    since = (after or datetime.now(UTC)).astimezone(UTC)
    anchored = trigger.anchored(since)
    fires: list[datetime] = []
    when = anchored.first(since)
    while when is not None and len(fires) < count:
        if when >= since:
            fires.append(when)
        when = anchored.next(when)
    zone_name = getattr(zone, "key", "UTC")
    offsets = _spread_offsets(fires, spread, task_id)
    if as_json:
        _print_json(
            {
                "trigger": anchored,
                "after": since,
                "tz": zone_name,
                "fires": [
                    {"utc": _iso(f), "local": _local_iso(f, zone), **_offset_json(f, offsets, i)}
                    for i, f in enumerate(fires)
                ],
            }
        )
        return
    title = f"{anchored.describe()}: next {len(fires)} at or after {_iso(since)}"
    if not fires:
        click.echo(f"{anchored.describe()}: no fire at or after {_iso(since)}")
        return
    columns: tuple[str, ...] = ("#", zone_name, "UTC", "after start")
    rows = [
        [i, f"{_local_iso(f, zone)} {f.astimezone(zone).tzname()}", _iso(f), _delta(f - since)]
        for i, f in enumerate(fires, 1)
    ]
    if offsets is not None:
        columns += ("offset", "starts (UTC)")
        for row, f, off in zip(rows, fires, offsets, strict=True):
            row += [f"+{off / 1000:g}s", _iso(f + timedelta(milliseconds=off))]
    _table(title, columns, rows)


def _spread_offsets(
    fires: list[datetime], spread: float | None, task_id: str | None
) -> list[int] | None:
    """Each fire's offset (ms) under ``--spread``: derived from the task and run ids."""
    if spread is None:
        return None
    if not task_id:
        raise click.UsageError("--spread offsets derive from the task id: give --task-id too")
    from .clock import to_ms
    from .spread import check_spread, offset_ms
    from .store import scheduled_run_id

    spread_ms = check_spread(spread)
    return [offset_ms(task_id, scheduled_run_id(to_ms(f)), spread_ms) for f in fires]


def _offset_json(fire: datetime, offsets: list[int] | None, i: int) -> dict[str, Any]:
    if offsets is None:
        return {}
    return {"offset_ms": offsets[i], "starts": _iso(fire + timedelta(milliseconds=offsets[i]))}


def _delta(td: timedelta) -> str:
    total = int(td.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        n, total = divmod(total, size)
        if n:
            parts.append(f"{n}{unit}")
    if total or not parts:
        parts.append(f"{total}s")
    return "+" + "".join(parts)


# --- dlq -----------------------------------------------------------------------------------


@cli.group(epilog=EXIT_CODES_EPILOG)
def dlq() -> None:
    """Inspect and redrive the dead-letter queue."""


def _letter_info(letter: Any) -> dict[str, Any]:
    """A DeadLetter as the JSON and table of ``dlq list`` show it."""
    info = {
        "message_id": letter.message_id,
        "kind": letter.kind,
        "task_id": letter.task_id,
        "run_id": letter.run_id,
        "task_type": letter.task_type,
        "attempts": letter.attempts,
        "reason": letter.reason,
        "error": letter.error,
        "sent_at": _iso(letter.sent_at),
    }
    if letter.body is not None:
        info["body"] = letter.body
    return info


@dlq.command("list")
@click.option(
    "--max", "max_messages", type=click.IntRange(1, 10000), default=100, show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_wide_option
@pass_config
def dlq_list(cfg: _Config, max_messages: int, as_json: bool, wide: bool) -> None:
    """Show DLQ messages without consuming them."""
    cfg.require_dlq()
    infos = [_letter_info(m) for m in cfg.scheduler().dead_letters(max_messages)]
    if as_json:
        _print_json(infos)
        return
    from .cli_tables import Col, plural

    _table(
        plural(len(infos), "DLQ message"),
        (
            Col("kind", 4, 8),
            Col("task_id", 0, 10),
            Col("run_id", 0, 15),
            Col("tries", 3, 5, justify="right"),
            Col("reason", 1, 12, wrap=True),
            Col("error", 2, 12, wrap=True),
            Col("sent_at", 5, 20),
        ),
        (
            (
                i["kind"],
                i["task_id"],
                i["run_id"],
                i["attempts"],
                i["reason"],
                i["error"],
                i["sent_at"],
            )
            for i in infos
        ),
        wide=wide,
    )


@dlq.command("redrive")
@click.argument("task_id", required=False)
@click.argument("run_id", required=False)
@click.option("--all", "redrive_all", is_flag=True, help="Redrive every redrivable message.")
@click.option(
    "--max", "max_messages", type=click.IntRange(1, 100000), default=1000, show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_config
def dlq_redrive(
    cfg: _Config,
    task_id: str | None,
    run_id: str | None,
    redrive_all: bool,
    max_messages: int,
    as_json: bool,
) -> None:
    """Give dead runs new attempts; delete their DLQ messages once done.

    --all: messages that cannot be redriven (undecodable, orphan, run no longer dead) are
    reported and left on the queue. TASK_ID RUN_ID: the run is redriven from the table if it is
    dead, then its DLQ messages (if any) are deleted (Scheduler.redrive / redrive_all).
    """
    if redrive_all == bool(task_id):
        raise click.UsageError("give either --all or TASK_ID RUN_ID")
    if task_id and not run_id:
        raise click.UsageError("give both TASK_ID and RUN_ID")
    scheduler = cfg.scheduler()
    cfg.require_dlq()
    if redrive_all:
        results = [dataclasses.asdict(r) for r in scheduler.redrive_all(max_messages)]
    else:
        assert task_id and run_id
        run = scheduler.redrive(task_id, run_id)  # raises RunNotFound / InvalidStateError
        results = [
            {
                "message_id": None,
                "kind": None,
                "task_id": task_id,
                "run_id": run_id,
                "outcome": "redriven",
                "detail": f"run is {run.status.value}; its DLQ messages deleted",
            }
        ]
    if as_json:
        _print_json(results)
    else:
        done = sum(r["outcome"] == "redriven" for r in results)
        left = sum(r["outcome"] == "left" for r in results)
        from .cli_tables import Col

        _table(
            f"redriven {done}, left {left}",
            (
                Col("outcome", 0, 7),
                Col("kind", 3, 4),
                Col("task_id", 0, 10),
                Col("run_id", 0, 15),
                Col("detail", 1, 12, wrap=True),
            ),
            ((r["outcome"], r["kind"], r["task_id"], r["run_id"], r["detail"]) for r in results),
        )


# --- local ---------------------------------------------------------------------------------


# --- limits --------------------------------------------------------------------------------


@cli.group(epilog=EXIT_CODES_EPILOG)
def limits() -> None:
    """Rate and concurrency limits that tasks share (schedule --limit NAME)."""


def _limit_row(limit: Any) -> tuple[str, str, str, str]:
    rate = f"{limit.rate} ({limit.per_s:g}/s)" if limit.rate else "-"
    return (limit.name, rate, str(limit.burst), str(limit.concurrency or "-"))


@limits.command("set")
@click.argument("name")
@click.option("--rate", metavar="COUNT/UNIT", help="e.g. 10/s, 100/m, 5/10s, 2/h.")
@click.option("--burst", type=int, default=1, show_default=True, help="Starts allowed at once.")
@click.option("--concurrency", type=int, help="Most runs of the limit running at once.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_config
def limits_set(
    cfg: _Config, name: str, rate: str | None, burst: int, concurrency: int | None, as_json: bool
) -> None:
    """Create or change a limit."""
    limit = cfg.scheduler().set_limit(name, rate=rate, burst=burst, concurrency=concurrency)
    if as_json:
        _print_json(limit)
    else:
        click.echo(f"limit {limit.name}: rate {_limit_row(limit)[1]}, burst {limit.burst}, "
                   f"concurrency {limit.concurrency or '-'}")


@limits.command("show")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_config
def limits_show(cfg: _Config, name: str | None, as_json: bool) -> None:
    """One limit, or every limit."""
    s = cfg.scheduler()
    found = [s.get_limit(name)] if name else s.limits()
    if as_json:
        _print_json(found)
        return
    _table(f"{len(found)} limit(s)", ("limit", "rate", "burst", "concurrency"),
           (_limit_row(limit) for limit in found))


@limits.command("clear")
@click.argument("name")
@pass_config
def limits_clear(cfg: _Config, name: str) -> None:
    """Delete a limit (its tasks' runs then start unthrottled)."""
    if not cfg.scheduler().clear_limit(name):
        from .limits import LimitNotFound

        raise LimitNotFound(name)
    click.echo(f"limit {name} cleared")


@cli.command("local", epilog=EXIT_CODES_EPILOG)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--handlers", default="", metavar="MODULE[,MODULE]", help="Handler modules to import."
)
@click.option("--demo", is_flag=True, help="Schedule a sample workload, run it, print a summary.")
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), help="Demo length in seconds."
)
@click.option("--shards", type=click.IntRange(1, 1000), help="Due-index shards.")
@click.option(
    "--pollers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Poller loops, each polling its own group of shards (the template's PollerFanout).",
)
@click.option(
    "--lambda",
    "lambdas",
    multiple=True,
    metavar="NAME=MODULE:FUNC",
    help="Lambda targets named NAME call this Python function (DYNACRON_LOCAL_LAMBDAS).",
)
@click.option(
    "--state",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Keep tasks, runs and dead letters in FILE across restarts [in memory only].",
)
def local(
    port: int,
    handlers: str,
    demo: bool,
    duration: float | None,
    shards: int | None,
    state: str | None,
    lambdas: tuple[str, ...] = (),
    pollers: int = 1,
) -> int:
    """Run the whole system on an embedded moto server (no Docker, no account)."""
    import importlib

    if lambdas:  # the runtime reads the mapping where it reads its other settings
        from .targets import parse_local_lambdas

        joined = ",".join(filter(None, [os.environ.get("DYNACRON_LOCAL_LAMBDAS"), *lambdas]))
        try:  # a malformed entry fails here, before the server starts
            parse_local_lambdas(joined)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="'--lambda'") from None
        os.environ["DYNACRON_LOCAL_LAMBDAS"] = joined

    from .local import require_local

    require_local("dynacron local")  # before the server's imports fail half-way
    runtime = importlib.import_module("dynacron.local.runtime")
    code = runtime.main(
        port=port,
        handlers=[m.strip() for m in handlers.split(",") if m.strip()],
        demo=demo,
        duration=duration,
        shards=shards,
        state=state,
        pollers=pollers,
    )
    return int(code or 0)


# Shared with the commands kept in modules of their own (cli_*.py, ui/command.py): their
# public names, so that no module imports another's private ones.
Config = _Config
build_trigger = _build_trigger
payload = _payload
print_json = _print_json
show_task = _show_task
trigger_options = _trigger_options
display_zone = _display_zone
run_columns = _run_columns
run_row = _run_row
table = _table
console = _console
delta = _delta
iso = _iso

# Commands kept in modules of their own register on ``cli`` when imported.
from . import cli_edits, cli_stats  # noqa: E402, F401
from .ui import command as _ui_command  # noqa: E402, F401


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``dynacron``)."""
    cli.main(args=argv, prog_name="dynacron")


if __name__ == "__main__":  # pragma: no cover
    main()
