"""The agent daemon with one method replaced, to test what the agent does
when a thread fails the way no code expects.

``INSTANCEMONITOR_FAULT=module:Class.method:how``, ``how`` being ``raise``
(an exception nobody catches), ``return`` (the thread's loop just ends) or
``hang`` (blocks for ever, as a DNS lookup no timeout covers).
"""

import importlib
import os
import sys
import threading

from instancemonitor.cmd import agent


def _fault(how: str):
    def raises(*_args, **_kwargs):
        raise KeyError('injected by the test')

    def returns(*_args, **_kwargs):
        return None

    def hangs(*_args, **_kwargs):
        threading.Event().wait()
    return {'raise': raises, 'return': returns, 'hang': hangs}[how]


def main() -> int:
    target, how = os.environ['INSTANCEMONITOR_FAULT'].rsplit(':', 1)
    module, _, attribute = target.partition(':')
    owner_name, _, method = attribute.rpartition('.')
    owner = importlib.import_module(module)
    if owner_name:
        owner = getattr(owner, owner_name)
    setattr(owner, method, _fault(how))
    return agent.main(sys.argv[1:])


if __name__ == '__main__':
    sys.exit(main())
