"""The recovery API and Keystone over HTTPS: keystoneauth's TLS options of
[api] (cafile, insecure, certfile, keyfile) govern the notification's POST."""

import datetime

import pytest

from instancemonitor.events import Notification
from instancemonitor.sinks import Outcome
from instancemonitor.sinks import masakari
from tests.fakes import keystone as fake_keystone
from tests.fakes.recovery_api import RecoveryAPI
from tests.tls import make_ca


def notification():
    return Notification('compute-1', '26f37fe6-2b5c-4a8e-8a4b-1b0c6f1d2e3f',
                        'LIFECYCLE', 'STOPPED_FAILED', datetime.datetime.now(datetime.UTC))


@pytest.fixture(scope='module')
def ca(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp('ca'))


@pytest.fixture
def https_api(ca):
    made = []

    def start(require_client_cert=False, authority=None):
        made.append(RecoveryAPI(tls=(authority or ca).server_context(
            require_client_cert)).start())
        return made[-1]
    yield start
    for api in made:
        api.stop()


def send(make_conf, **api):
    return masakari.MasakariSink(masakari.adapter_from_conf(
        make_conf(api=api))).send(notification())


def test_the_api_over_https_is_trusted_through_cafile(https_api, ca, make_conf):
    api = https_api()
    assert api.url.startswith('https://')
    assert send(make_conf, endpoint=api.url, cafile=str(ca.ca)).outcome is (
        Outcome.DELIVERED)
    assert len(api.stored) == 1


def test_an_untrusted_certificate_is_a_clear_transient_error(https_api, make_conf):
    api = https_api()
    answer = send(make_conf, endpoint=api.url)  # the system's CAs only
    assert answer.outcome is Outcome.RETRY and api.stored == []
    assert 'CERTIFICATE_VERIFY_FAILED' in answer.message


def test_a_certificate_for_another_host_is_refused(https_api, ca, make_conf, tmp_path):
    other = make_ca(tmp_path / 'other', server_names='DNS:masakari.example')
    api = https_api(authority=other)
    answer = send(make_conf, endpoint=api.url, cafile=str(other.ca))
    assert answer.outcome is Outcome.RETRY and api.stored == []
    assert "match" in answer.message and '127.0.0.1' in answer.message


def test_insecure_skips_verification(https_api, make_conf):
    api = https_api()
    assert send(make_conf, endpoint=api.url, insecure=True).outcome is (
        Outcome.DELIVERED)


def test_a_client_certificate_is_presented_when_configured(https_api, ca, make_conf):
    api = https_api(require_client_cert=True)
    without = send(make_conf, endpoint=api.url, cafile=str(ca.ca))
    assert without.outcome is Outcome.RETRY and api.stored == []
    assert send(make_conf, endpoint=api.url, cafile=str(ca.ca),
                certfile=str(ca.client_cert),
                keyfile=str(ca.client_key)).outcome is Outcome.DELIVERED
    assert len(api.stored) == 1


def test_keystone_and_the_catalogs_api_over_https(ca, make_conf, tmp_path):
    holder = {}
    api = RecoveryAPI(token_check=lambda t: holder['ks'].is_valid(t),
                      tls=ca.server_context()).start()
    ks = fake_keystone.Keystone({'instance-ha': {'internal': api.url, 'public': api.url}},
                                tls=ca.server_context()).start()
    holder['ks'] = ks
    try:
        assert ks.auth_url.startswith('https://')
        path = tmp_path / 'keystone.conf'
        path.write_text('[api]\n' + ks.password_options()
                        + f'api_interface = internal\ncafile = {ca.ca}\n')
        answer = masakari.MasakariSink(masakari.adapter_from_conf(
            make_conf([str(path)]))).send(notification())
        assert answer.outcome is Outcome.DELIVERED and ks.logins == 1
        assert len(api.stored) == 1
    finally:
        ks.stop()
        api.stop()
