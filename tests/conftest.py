"""Shared fixtures. Tiers are marked by directory: unit, integration, e2e."""

import pathlib

import libvirt
import pytest
from oslo_config import cfg
from oslo_log import log as oslo_logging

from instancemonitor import conf as im_conf
from tests.fakes.recovery_api import RecoveryAPI

TESTS = pathlib.Path(__file__).parent

# libvirt prints every error to stderr by default; tests read the exceptions.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = pathlib.Path(item.fspath).relative_to(TESTS).parts[0]
        if tier in ('unit', 'integration', 'e2e'):
            item.add_marker(getattr(pytest.mark, tier))


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
