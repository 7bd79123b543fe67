"""Which boot of the host this is.

libvirt's domain id tells a domain's runs apart only while libvirtd lives
on: one started with nothing running (as after a host restart) gives ids
from 1 again, so a domain autostarted before the agent connects may have
the id of its run before the restart. The kernel's boot id, a random UUID
made at each boot, tells the journal that every run it knew is over.
"""

import logging
import pathlib

LOG = logging.getLogger(__name__)

BOOT_ID = pathlib.Path('/proc/sys/kernel/random/boot_id')


def boot_id(path: pathlib.Path = BOOT_ID) -> str:
    """This boot's id; '' (with a warning) if it cannot be read."""
    try:
        return path.read_text().strip()
    except OSError as error:
        LOG.warning('Cannot read the host boot id from %s (%s): a domain '
                    'restarted with the id of its run before a host restart '
                    'is taken for the same run', path, error)
        return ''
