"""A small schema registry speaking the Confluent REST API, over HTTPS with a test CA, a
required client certificate and basic auth: what camflow's registry clients must reach.

No real Schema Registry can run on this project's machines (neither Confluent's nor
Karapace is a PyPI or Debian package), so this stands in for one in the tests: subjects,
versions, global ids, per-subject compatibility levels, and compatibility checked with the
Apache ``avro`` library's reader/writer checker (FULL_TRANSITIVE: both ways, every version).
It implements the calls camflow makes and nothing more.
"""
from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    folder.mkdir(parents=True, exist_ok=True)

    def issue(name, issuer_name, issuer_key, key, ca=False, server=False):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False), critical=True)
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False)
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(stem, cert, key):
        (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "camflow test CA")])
    ca = issue("camflow test CA", ca_name, ca_key, ca_key, ca=True)
    write("ca", ca, ca_key)
    for stem, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(stem, issue(f"camflow test {stem}", ca_name, ca_key, key, server=server), key)
    return {name: folder / name for name in ("ca.pem", "server.pem", "server.key",
                                               "client.pem", "client.key")}


class FakeRegistry:
    """``FakeRegistry(pki, user, password).start()`` -> its ``url``; ``stop()`` at the end."""

    def __init__(self, pki: dict[str, Path], user: str, password: str):
        self.pki, self.auth = pki, "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.schemas: dict[int, str] = {}            # id -> schema text
        self.subjects: dict[str, list[int]] = {}     # subject -> ids, one per version
        self.levels: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []    # (method, path) of every request
        self.refused = 0                             # requests without the right credentials
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> str:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                path = self.path.split("?")[0].rstrip("/")
                registry.requests.append((method, path))
                if self.headers.get("Authorization") != registry.auth:
                    registry.refused += 1
                    return self._answer(401, {"error_code": 401, "message": "Unauthorized"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                with registry.lock:
                    status, answer = registry.route(method, path, body)
                self._answer(status, answer)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki["server.pem"], self.pki["server.key"])
        context.load_verify_locations(self.pki["ca.pem"])
        context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: a client certificate of the CA
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- the REST API ------------------------------------------------------------------
    def route(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        from urllib.parse import unquote
        if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
            text = self.schemas.get(int(m[1]))
            return (200, {"schema": text}) if text else (404, {"error_code": 40403,
                                                               "message": "Schema not found"})
        if m := re.fullmatch(r"/config/([^/]+)", path):
            subject = unquote(m[1])
            if method == "PUT":
                self.levels[subject] = body["compatibility"].upper()
                return 200, {"compatibility": self.levels[subject]}
            if subject in self.levels:
                return 200, {"compatibilityLevel": self.levels[subject]}
            return 404, {"error_code": 40408, "message": "Subject does not have subject-level "
                                                         "compatibility configured"}
        if m := re.fullmatch(r"/compatibility/subjects/([^/]+)/versions", path):
            subject = unquote(m[1])
            if subject not in self.subjects:
                return 404, {"error_code": 40401, "message": "Subject not found"}
            problems = self.incompatible(subject, body["schema"])
            return 200, {"is_compatible": not problems, "messages": problems}
        if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            return self.register(unquote(m[1]), body["schema"])
        if m := re.fullmatch(r"/subjects/([^/]+)", path):
            subject, wanted = unquote(m[1]), self.canonical(body["schema"])
            for version, schema_id in enumerate(self.subjects.get(subject, []), start=1):
                if self.canonical(self.schemas[schema_id]) == wanted:
                    return 200, {"subject": subject, "id": schema_id, "version": version,
                                 "schema": self.schemas[schema_id]}
            return 404, {"error_code": 40403 if subject in self.subjects else 40401,
                         "message": "Schema not found"}
        return 404, {"error_code": 404, "message": f"no route {method} {path}"}

    @staticmethod
    def canonical(text: str) -> str:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))

    def incompatible(self, subject: str, text: str) -> list[str]:
        """FULL_TRANSITIVE (or BACKWARD, the registry's default level, on the latest only)."""
        import avro.schema
        from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
        level = self.levels.get(subject, "BACKWARD")
        new = avro.schema.parse(text)
        olds = [avro.schema.parse(self.schemas[i]) for i in self.subjects.get(subject, [])]
        if not level.endswith("TRANSITIVE"):
            olds = olds[-1:]
        pairs = [(new, old) for old in olds]
        if level.startswith("FULL") or level.startswith("FORWARD"):
            pairs += [(old, new) for old in olds]
        if level == "NONE":
            pairs = []
        checker, problems = ReaderWriterCompatibilityChecker(), []
        for reader, writer in pairs:
            result = checker.get_compatibility(reader, writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                problems += sorted(result.messages)
        return problems

    def register(self, subject: str, text: str) -> tuple[int, dict]:
        wanted = self.canonical(text)
        for schema_id in self.subjects.get(subject, []):
            if self.canonical(self.schemas[schema_id]) == wanted:
                return 200, {"id": schema_id}
        problems = self.incompatible(subject, text)
        if problems:
            return 409, {"error_code": 409, "message": "Schema being registered is incompatible "
                                                       f"with an earlier schema: {problems[:3]}"}
        schema_id = next((i for i, t in self.schemas.items() if self.canonical(t) == wanted),
                         max(self.schemas, default=0) + 1)
        self.schemas[schema_id] = text
        self.subjects.setdefault(subject, []).append(schema_id)
        return 200, {"id": schema_id}
