from __future__ import annotations

import logging

import pytest

from reconciler.app import logs


def test_every_reconciler_log_line_names_its_request_and_configs(caplog: pytest.LogCaptureFixture) -> None:
    child = logging.getLogger("reconciler.somewhere")
    logs.install()
    with caplog.at_level(logging.INFO, logger="reconciler"):
        with logs.log_context(request_id="CHG1"), logs.log_context(config_ids=["a/b/c", "d/e/f"]):
            child.info("applied %d actions", 3)
        child.info("outside any request")
    inside, outside = caplog.records
    assert inside.getMessage() == "applied 3 actions [request=CHG1 configs=a/b/c,d/e/f]"
    assert (inside.request_id, inside.config_ids) == ("CHG1", "a/b/c,d/e/f")  # type: ignore[attr-defined]
    assert outside.getMessage() == "outside any request"
