"""Secrets never leave their box: every end-to-end test (the test_e2e_* modules,
and the other modules that run the whole Stack) is watched, and its log output
(lambdalet's loggers at every level, everything else at the levels Lambda
emits), what is printed (powertools' JSON logs, EMF metrics), the app's answers
and the Events and pod statuses it left are searched for every secret value
the test world handed lambdalet (tests/world/stack.py SECRET_VALUES, RUNTIME_SECRETS)."""

from __future__ import annotations

import logging
import sys

import pytest

WATCHED = ("tests.test_e2e_", "tests.test_stop_what_is_dead", "tests.test_chaos", "tests.test_webhook_transport",
           "tests.test_secrets", "tests.test_eks_identity", "tests.test_node_identity")


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("lambdalet") or record.levelno >= logging.WARNING:
            try:
                self.lines.append(self.format(record))
            except Exception as err:  # noqa: BLE001 - a record that cannot format is a finding too
                self.lines.append(f"unformattable record {record.name}: {err!r} {record.msg!r} {record.args!r}")


def leaks(text: str, secrets) -> list[str]:
    """The secret values found in ``text`` (shown by their first characters only)."""
    return [f"{s[:6]}..." for s in secrets if s and s in text]


@pytest.fixture(autouse=True)
def secrets_never_leave_their_box(request, capsys):
    if not request.module.__name__.startswith(WATCHED):
        yield
        return
    from tests.world import stack

    stack.TRANSCRIPTS.clear()
    handler = _Capture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    lambdalet = logging.getLogger("lambdalet")
    level = lambdalet.level
    lambdalet.setLevel(logging.DEBUG)
    for logger in (logging.getLogger(), lambdalet):  # powertools' "lambdalet" logger may not propagate
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in (logging.getLogger(), lambdalet):
            logger.removeHandler(handler)
        lambdalet.setLevel(level)
        out, err = capsys.readouterr()
        sys.stdout.write(out)  # still shown with a failing test
        sys.stderr.write(err)
        seen = "\n".join([*handler.lines, out, err, *stack.TRANSCRIPTS])
        found = leaks(seen, (*stack.SECRET_VALUES, *stack.RUNTIME_SECRETS))
        assert not found, f"secret values in logs, Events or answers: {found}"


def pytest_terminal_summary(terminalreporter):
    """The figures tests recorded (record_property "figures": fuzz, chaos), also under xdist."""
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        for key, value in getattr(report, "user_properties", []):
            if key == "figures" and report.when == "call":
                terminalreporter.write_line(f"{report.nodeid}:\n{value}")
