"""The shipped Prometheus alerts: promtool's own rule tests, and the metrics
they use as a live agent serves them (named by Prometheus' conventions)."""

import pathlib
import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from tests.processes import free_port
from tests.processes import skip_or_fail

HERE = pathlib.Path(__file__).parent
RULES = HERE.parent.parent / 'etc' / 'prometheus' / 'instancemonitor-alerts.yml'


@pytest.fixture
def promtool() -> str:
    path = shutil.which('promtool')
    if path is None:
        skip_or_fail('promtool is not installed (apt-get install prometheus)')
    return path


def test_every_alert_fires_when_it_should_and_not_before(promtool):
    result = subprocess.run([promtool, 'test', 'rules', 'alerts-test.yml'], cwd=HERE,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # Each alert of the file has a test that expects it to fire.
    alerts = {rule['alert'] for group in yaml.safe_load(RULES.read_text())['groups']
              for rule in group['rules']}
    tested = {case['alertname']
              for test in yaml.safe_load((HERE / 'alerts-test.yml').read_text())['tests']
              for case in test['alert_rule_test'] if case['exp_alerts']}
    assert tested == alerts


def test_the_live_metrics_pass_promtool_and_have_what_the_alerts_use(
        promtool, start_agent):
    port = free_port()
    start_agent(metrics={'port': port})
    text = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics',
                                  timeout=5).read().decode()
    lint = subprocess.run([promtool, 'check', 'metrics'], input=text,
                          capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    served = set(re.findall(r'^(instancemonitor_\w+)', text, re.MULTILINE))
    used = set(re.findall(r'\b(instancemonitor_\w+)', RULES.read_text()))
    assert used <= served, used - served
