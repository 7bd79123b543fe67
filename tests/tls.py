"""A test certificate authority made with openssl, and TLS contexts from it."""

import dataclasses
import pathlib
import shutil
import ssl
import subprocess

from tests.processes import skip_or_fail


@dataclasses.dataclass(frozen=True)
class TestCA:
    ca: pathlib.Path        # the CA's certificate (what clients trust)
    cert: pathlib.Path      # the server's, for 127.0.0.1 and localhost
    key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(['openssl', *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: pathlib.Path, name: str = 'test-ca',
            server_names: str = 'IP:127.0.0.1,DNS:localhost') -> TestCA:
    """A CA, a server certificate for ``server_names`` signed by it, and a
    client certificate; EC keys, valid for a day."""
    if shutil.which('openssl') is None:
        skip_or_fail('openssl is not installed')
    directory.mkdir(parents=True, exist_ok=True)
    key = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes')
    _openssl('req', '-x509', *key, '-keyout', 'ca.key', '-out', 'ca.pem',
             '-days', '1', '-subj', f'/CN={name}', cwd=directory)
    for who, extensions in (('server', f'subjectAltName={server_names}'),
                            ('client', 'extendedKeyUsage=clientAuth')):
        _openssl('req', *key, '-keyout', f'{who}.key', '-out', f'{who}.csr',
                 '-subj', f'/CN={who}', cwd=directory)
        (directory / f'{who}.ext').write_text(extensions + '\n')
        _openssl('x509', '-req', '-in', f'{who}.csr', '-CA', 'ca.pem',
                 '-CAkey', 'ca.key', '-CAcreateserial', '-out', f'{who}.pem',
                 '-days', '1', '-extfile', f'{who}.ext', cwd=directory)
    return TestCA(directory / 'ca.pem', directory / 'server.pem',
                  directory / 'server.key', directory / 'client.pem',
                  directory / 'client.key')
