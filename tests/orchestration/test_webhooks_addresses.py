"""Where a webhook goes: to the address that was checked, never to a name resolved again (DNS rebinding), with
TLS's server name, the certificate check and the Host header naming the host."""

from __future__ import annotations

import socket
from typing import Any

import certifi
import pytest
from django.contrib.auth.models import User

from orchestration.models import WebhookAttemptOutcome
from orchestration.services import webhooks
from orchestration.services.webhook_delivery import webhook_deliver
from tests.orchestration.test_webhooks_delivery import outcome_delivery, registered

pytestmark = pytest.mark.django_db


def test_a_name_that_rebinds_to_an_internal_address_after_the_check_is_not_followed(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolves to a public address when checked and to an internal one a moment later. The
    attempt connects to the address it checked, so the internal listener never sees a connection. (127.0.0.2 plays
    the public address: both listeners are on loopback, the only addresses a test can listen on.)"""
    public, internal = socket.socket(), socket.socket()
    for listener, address in ((public, "127.0.0.2"), (internal, "127.0.0.1")):
        listener.bind((address, 0 if listener is public else public.getsockname()[1]))
        listener.listen()
        listener.settimeout(0.2)
    port = public.getsockname()[1]
    answers = iter([("127.0.0.2", port)])
    resolve = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host != "hooks.example.com":  # an address literal resolves to itself
            return resolve(host, *args, **kwargs)
        address = next(answers, ("127.0.0.1", port))  # public first, internal from then on
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", address)]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(webhooks, "_internal", lambda address: address != "127.0.0.2")
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_TIMEOUT_SECONDS = False, 0.5
    endpoint, _ = registered(User.objects.create(username="client"), f"https://hooks.example.com:{port}/in")
    answers = iter([("127.0.0.2", port)])  # registration resolved once: the delivery's check sees public again
    delivery = outcome_delivery(endpoint.owner)
    try:
        webhook_deliver(delivery_id=delivery.pk)
        accepted = []
        for listener in (public, internal):
            try:
                connection, _ = listener.accept()
                connection.close()
                accepted.append(listener)
            except TimeoutError:
                pass
    finally:
        public.close()
        internal.close()
    assert accepted == [public]
    assert delivery.attempt_log.get().outcome == WebhookAttemptOutcome.FAILED  # the fake public end speaks no TLS


def _tls_receiver(tmp_path: Any, name: str) -> tuple[Any, str]:
    """An HTTPS receiver on 127.0.0.2 whose certificate names `name`, signed by a CA of its own; the CA's file."""
    import datetime as dt
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, key: Any, issuer: str, signer: Any, *, ca: bool) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        built = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            built = built.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return built.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf = certificate(name, leaf_key, "test CA", ca_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(pem, pkcs8, serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.server.hosts.append(self.headers["host"])  # type: ignore[attr-defined]
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    server.hosts = []  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, str(tmp_path / "ca.pem")


@pytest.mark.parametrize(
    ("certificate_names", "delivered"), [("hooks.example.com", True), ("other.example.com", False)]
)
def test_https_goes_to_the_checked_address_and_verifies_the_hosts_certificate(
    settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, certificate_names: str, delivered: bool
) -> None:
    """The socket goes to the address checked; TLS's server name, the certificate check and the Host header name
    the host. A certificate for another name is refused."""
    server, ca_file = _tls_receiver(tmp_path, certificate_names)
    port = server.server_address[1]
    resolve = socket.getaddrinfo

    def resolving(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host != "hooks.example.com":
            return resolve(host, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolving)
    monkeypatch.setattr(webhooks, "_internal", lambda address: address != "127.0.0.2")  # 127.0.0.2 plays public
    monkeypatch.setattr(certifi, "where", lambda: ca_file)
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    try:
        endpoint, _ = registered(User.objects.create(username="client"), f"https://hooks.example.com:{port}/in")
        delivery = outcome_delivery(endpoint.owner)
        webhook_deliver(delivery_id=delivery.pk)
    finally:
        server.shutdown()
        server.server_close()
    attempt = delivery.attempt_log.get()
    if delivered:
        assert attempt.outcome == WebhookAttemptOutcome.SUCCEEDED and attempt.status_code == 204, attempt.error
        assert server.hosts == [f"hooks.example.com:{port}"]
    else:
        assert attempt.outcome == WebhookAttemptOutcome.FAILED
        assert "hostname 'hooks.example.com' doesn't match 'other.example.com'" in attempt.error
        assert server.hosts == []
