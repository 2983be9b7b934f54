"""Failure reports of end-to-end tests carry the stderr of every process of the testbed they used."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.e2e.processes import ProcessTestbed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, ProcessTestbed):
                report.sections.append((f"process stderr ({name}, {value.directory})", value.logs()))
    return report
