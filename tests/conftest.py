"""Shared fixtures. Tiers are marked by directory: unit, integration, e2e."""

import pathlib

import libvirt
import pytest
from oslo_config import cfg
from oslo_log import log as oslo_logging

from instancemonitor import conf as im_conf
from tests.fakes.recovery_api import RecoveryAPI
from tests.processes import REQUIRED_IN_CI

TESTS = pathlib.Path(__file__).parent

# libvirt prints every error to stderr by default; tests read the exceptions.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _tier(item: pytest.Item) -> str:
    return pathlib.Path(item.fspath).relative_to(TESTS).parts[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _tier(item) in ('unit', 'integration', 'e2e'):
            item.add_marker(getattr(pytest.mark, _tier(item)))


_e2e_outcomes: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if 'e2e' in report.keywords and (report.when == 'call' or report.skipped):
        _e2e_outcomes.append('xfailed' if hasattr(report, 'wasxfail')
                             else report.outcome)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI the end-to-end tier must run: a skip there is a failure."""
    collected_e2e = any(_tier(item) == 'e2e' for item in session.items)
    if not REQUIRED_IN_CI or not collected_e2e:
        return
    if 'skipped' in _e2e_outcomes or 'passed' not in _e2e_outcomes:
        session.config.get_terminal_writer().line(
            '\nCI: the e2e tier did not run in full '
            f'({_e2e_outcomes.count("skipped")} skipped, '
            f'{_e2e_outcomes.count("passed")} passed)', red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def recovery_api():
    api = RecoveryAPI().start()
    yield api
    api.stop()


@pytest.fixture
def make_conf():
    """A fresh ConfigOpts with every option registered, overrides applied.

    ``make_conf(api={'endpoint': url}, events={'forward': 'all'})``
    """
    def make(config_files: list[str] | None = None, **groups: dict) -> cfg.ConfigOpts:
        conf = cfg.ConfigOpts()
        im_conf.register_opts(conf)
        oslo_logging.register_options(conf)
        args = [arg for path in config_files or [] for arg in ('--config-file', path)]
        conf(args, project='instancemonitor', default_config_files=[],
             default_config_dirs=[])
        for group, values in groups.items():
            for name, value in values.items():
                conf.set_override(name, value,
                                  group=None if group == 'DEFAULT' else group)
        return conf
    return make
