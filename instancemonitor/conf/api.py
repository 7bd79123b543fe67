"""[api] options: where the recovery API is and how to authenticate.

The Keystone options are keystoneauth1's own (``auth_type``, ``auth_url``,
``username``, ``password``, ``project_name``, ``*_domain_name``, ``cafile``,
``insecure``, ``timeout``, ...), so a masakari-monitors ``[api]`` section
works unchanged.
"""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

API_GROUP = 'api'
# Requests one send may make, each up to [api] timeout: endpoint discovery,
# a token, the POST.
REQUESTS_PER_SEND = 3
SERVICE_TYPE = 'instance-ha'
DEFAULT_HTTP_TIMEOUT = 15



def _api_group() -> cfg.OptGroup:
    # A new group each time: see conf/__init__.py.
    return cfg.OptGroup(API_GROUP, title='Recovery API', help="""
The recovery API notifications are posted to: OpenStack Masakari found in the
Keystone catalog (service type ``instance-ha``), or any endpoint that speaks
Masakari's notification format.
""")


api_opts = [
    cfg.StrOpt(
        'region',
        default='RegionOne',
        help="""
Region of the recovery API's endpoint in the Keystone catalog.

Related options:

* ``api_interface``, ``endpoint``
"""),
    cfg.StrOpt(
        'api_interface',
        default='public',
        choices=[
            ('public', 'the endpoint reachable from outside the cloud'),
            ('internal', 'the endpoint on the cloud\'s internal network'),
            ('admin', 'the administrative endpoint'),
        ],
        help="""
Interface of the recovery API's endpoint in the Keystone catalog.

Related options:

* ``region``, ``endpoint``
"""),
    cfg.URIOpt(
        'endpoint',
        schemes=['http', 'https'],
        help="""
Explicit URL of the recovery API, including its version, e.g.
``http://controller:15868/v1``. Notifications go to ``{endpoint}/notifications``.

Possible values:

* Unset: look the endpoint up in the Keystone catalog (needs ``auth_type``).
* A URL: used as is. Without ``auth_type`` requests carry no token (for a
  Masakari with ``auth_strategy = noauth2`` or another receiver without
  Keystone); with ``auth_type`` they carry one.

Related options:

* ``auth_type``, ``region``, ``api_interface``
"""),
    cfg.FloatOpt(
        'duplicate_detection_interval',
        default=180.0,
        min=0.0,
        help="""
Masakari's ``[DEFAULT] duplicate_notification_detection_interval``: set both
to the same value.

Masakari takes a notification for a duplicate, answers 409 and does nothing,
when it stored one from the same host with the same payload whose
``generated_time`` is at most this many seconds older; a VM notification's
payload can only be its instance and event. That collapses every resend of
one notification, as it should, but also a second failure of the same
instance soon after the first (it crashed, Masakari restarted it, it crashed
again). So a second notification of the same instance and event within this
interval is held, and generated, until the interval since the first has
passed: the second recovery comes late but does not get lost.

Possible values:

* 0: send at once, whatever Masakari will do with it.
* Seconds (default: 180, Masakari's default).
"""),
]


def _session_opts() -> list[cfg.Opt]:
    opts = ks_loading.get_session_conf_options()
    # keystoneauth's default is no timeout at all: a hung API would hold a
    # sender for ever. Masakari may itself sleep up to 5 s in every POST
    # (notification_delay_max), so stay well above that; and a send (endpoint
    # discovery, token, POST) must fit the systemd watchdog (60 s).
    cfg.set_defaults(opts, timeout=DEFAULT_HTTP_TIMEOUT)
    return opts


def _auth_opts() -> list[cfg.Opt]:
    # The sample shows the password plugin's options, the usual choice.
    return (ks_loading.get_auth_common_conf_options() +
            ks_loading.get_auth_plugin_conf_options('password'))


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_api_group())
    conf.register_opts(api_opts, group=API_GROUP)
    conf.register_opts(_session_opts(), group=API_GROUP)
    # auth_type and auth_section only: the chosen plugin's own options
    # (auth_url, username, ...) are registered by keystoneauth when it loads
    # the plugin, so a setup without Keystone never needs them.
    ks_loading.register_auth_conf_options(conf, API_GROUP)


def list_opts() -> dict:
    return {_api_group(): api_opts + _session_opts() + _auth_opts()}
