"""The README's quickstart demo runs and shows what Masakari stored."""

import json
import subprocess
import sys


def test_quickstart_shows_the_notification_masakari_stored(qemu_libvirtd):
    # (qemu_libvirtd: the tier's prerequisites are checked there.)
    result = subprocess.run([sys.executable, '-m', 'tests.quickstart'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    stored = json.loads(out[out.index('{'):out.rindex('}') + 1])
    assert stored['type'] == 'VM'
    assert stored['payload']['vir_domain_event'] == 'STOPPED_FAILED'
    assert out.rstrip().endswith('stopping everything started here')
