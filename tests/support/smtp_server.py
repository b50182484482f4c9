"""A real SMTP server on loopback for the tests (aiosmtpd).

Usage: smtp_server.py OUT_FILE [--auth USER:PASSWORD] [--refuse-mail-from CODE]
                      [--starttls | --implicit-tls]

--starttls offers STARTTLS, --implicit-tls speaks TLS from the first byte; both with a
self-signed certificate for 127.0.0.1 made at start (clients that verify refuse it).

Every message it accepts is appended to OUT_FILE as one JSON line:
{"mail_from", "rcpt_tos", "data" (base64 of the exact bytes)}. Recipients steer it:
a local part starting with `bounce` is refused with 550 5.1.1; `defer` is refused with
451 4.3.0 the first time each address is tried and accepted after; `busy` gets 421
the first time. Prints `READY <port>` once listening; runs until stdin closes.
"""

import argparse
import base64
import json
import socket
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    def __init__(self, out_file: str, refuse_mail_from: str | None):
        self.out_file = out_file
        self.refuse_mail_from = refuse_mail_from
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_mail_from:
            return f"{self.refuse_mail_from} sender refused by policy"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        with self.lock:
            tries = self.seen.get(address, 0)
            self.seen[address] = tries + 1
        if local.startswith("bounce"):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        if local.startswith("defer") and tries == 0:
            return "451 4.3.0 Temporary lookup failure, try again later"
        if local.startswith("busy") and tries == 0:
            return "421 4.7.0 Too busy, come back later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": base64.b64encode(envelope.original_content or envelope.content).decode(),
        }
        with self.lock, open(self.out_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 Ok: queued"


def self_signed_context():
    import datetime
    import ipaddress
    import ssl
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp()
    with open(f"{folder}/cert.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(f"{folder}/key.pem", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(f"{folder}/cert.pem", f"{folder}/key.pem")
    return ctx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_file")
    ap.add_argument("--auth")
    ap.add_argument("--refuse-mail-from")
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--implicit-tls", action="store_true")
    args = ap.parse_args()
    kwargs = {}
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
            # handled=False: aiosmtpd answers 535 itself on failure.
            return AuthResult(success=ok, handled=False)

        kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    if args.starttls:
        kwargs["tls_context"] = self_signed_context()
    if args.implicit_tls:
        kwargs["ssl_context"] = self_signed_context()
    port = free_port()
    controller = Controller(
        Handler(args.out_file, args.refuse_mail_from),
        hostname="127.0.0.1",
        port=port,
        decode_data=False,
        data_size_limit=64 * 1024 * 1024,
        **kwargs,
    )
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
