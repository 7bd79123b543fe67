"""The benchmarks the README quotes still run (tiny sizes; figures unread)."""

import pathlib
import subprocess
import sys

import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('bench, args, last_row', [
    ('wakeup', ['2'], '300'),
    ('latency', ['3'], '50'),
    ('burst', ['20'], ''),
])
def test_a_benchmark_prints_its_table(bench, args, last_row):
    done = subprocess.run([sys.executable, '-m', f'bench.{bench}', *args],
                          cwd=REPOSITORY, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = done.stdout.strip().splitlines()
    assert rows[0].startswith('#') and len(rows) >= 3, done.stdout
    assert rows[-1].split()[0].startswith(last_row), done.stdout
