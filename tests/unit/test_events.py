import datetime

from instancemonitor.events import Notification


def test_body_is_masakaris_schema_with_utc_generated_time():
    detected = datetime.datetime(2026, 11, 22, 11, 0, 0, 5,
                                 tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    n = Notification('compute-1', '26f37fe6-2b5c-4a8e-8a4b-1b0c6f1d2e3f',
                     'LIFECYCLE', 'STOPPED_FAILED', detected)
    assert n.body() == {'notification': {
        'type': 'VM', 'hostname': 'compute-1',
        'generated_time': '2026-11-22T10:00:00.000005Z',
        'payload': {'event': 'LIFECYCLE',
                    'instance_uuid': '26f37fe6-2b5c-4a8e-8a4b-1b0c6f1d2e3f',
                    'vir_domain_event': 'STOPPED_FAILED'}}}


def test_each_notification_has_its_own_id():
    t = datetime.datetime.now(datetime.UTC)
    assert (Notification('h', 'u', 'e', 'd', t).notification_id !=
            Notification('h', 'u', 'e', 'd', t).notification_id)
