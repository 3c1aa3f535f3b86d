"""lambdalet's own log lines reach the Lambda runtime's handler (root logger)."""

from __future__ import annotations

import logging

import app as lambdalet_app


def test_info_and_warning_lines_survive_chalice_pinning_its_logger(caplog):
    # Chalice pins logging.getLogger(app_name) to ERROR unless debug (chalice/app.py
    # _configure_log_level); that name is the parent of our "lambdalet.*" loggers.
    lambdalet_app.app.debug = False
    log = logging.getLogger("lambdalet.usecases")
    log.info("reconciled %d pods", 3)
    log.warning("deferred %d pods", 2)
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("lambdalet.usecases", "INFO", "reconciled 3 pods") in lines
    assert ("lambdalet.usecases", "WARNING", "deferred 2 pods") in lines
    assert logging.getLogger("lambdalet").getEffectiveLevel() == logging.INFO


def test_chalice_errors_still_propagate(caplog):
    lambdalet_app.app.log.error("view raised")
    assert [(r.name, r.levelname) for r in caplog.records] == [("lambdalet.chalice", "ERROR")]
