"""Stand-in for the Colosseum reservation / batch REST API (HTTPS, basic auth, loopback only).

Endpoints and JSON shapes follow the documentation page "Reserve Batch Jobs Without Using the
Reservation Website" (user-documentation reservations/reserve_batch_jobs.rst; summarised in
shared/reference/colosseum.md A.1 "Reservations"):

- ``GET /api/v1/reservations/<ID>`` -> a one-element list: res_status, start, end, duration,
  team_name, name, competitor_id, nodes [{lxcstatus "Dead", status, srn_id, image}],
  reservation_type, res_id, scenario_start_time;
- ``GET /api/v1/batch/files/`` -> {"Batch List": [{res_name, num_srns, name}]} read from the team's
  NAS batch folder (the same folder file-proxy writes, so uploads really show up);
- ``GET /api/v1/batch/jobs/?start_time=&stop_time=`` -> {"complete": [...], "pending": [...],
  "active": [...]} (the docs' example uses "complete");
- ``POST /api/v1/batch/jobs/`` with {"name", "filename", "priority"} -> empty body on success, the
  documented error text for a missing file;
- ``DELETE /api/v1/reservations/<ID>`` -> empty body, or "Error Querying Database for Tokens".

Wrong credentials get 401 with ``WWW-Authenticate: Basic``. The certificate is self-signed and
generated per test session (``make_cert``); the server binds 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (cryptography, which asyncssh needs anyway)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "rest-cert.pem", directory / "rest-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class RestState:
    def __init__(self, team: str, user: str, password: str, batch_dir: Path) -> None:
        self.team = team
        self.user = user
        self.password = password
        self.batch_dir = batch_dir
        self.reservations: dict[str, dict] = {}
        self.jobs: list[dict] = []
        self.next_job = 33276
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add_reservation(self, res_id: str, srns: list[int], image: str, status: str = "Active",
                        duration: float = 3600.0) -> dict:
        start = float(int(time.time()) // 300 * 300)
        res = {
            "res_status": status,
            "start": start,
            "team_name": self.team,
            "name": "pamdi-test",
            "competitor_id": self.user,
            "nodes": [{"lxcstatus": "Dead", "status": "Ready", "srn_id": s, "image": image} for s in srns],
            "reservation_type": 1,
            "res_id": res_id,
            "scenario_start_time": 0.0,
            "end": start + duration,
            "duration": duration,
        }
        self.reservations[res_id] = res
        return res


class Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _auth_ok(self) -> bool:
        st = self.server.state
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, pw = "", ""
            if user == st.user and pw == st.password:
                return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="colosseum"')
        self.send_header("Content-Type", "application/json")
        body = json.dumps({"detail": "Invalid username/password."}).encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def _send(self, code: int, obj: object | None) -> None:
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        st = self.server.state
        st.requests.append(("GET", self.path))
        if not self._auth_ok():
            return
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        if parts[:3] == ["api", "v1", "reservations"] and len(parts) == 4:
            res = st.reservations.get(parts[3])
            if res is None:
                self._send(404, {"detail": "Not found."})
            else:
                self._send(200, [res])
        elif parts == ["api", "v1", "batch", "files"]:
            items = []
            for f in sorted(st.batch_dir.glob("*.json")):
                try:
                    data = json.loads(f.read_text())
                    items.append({"res_name": data.get("BatchName", f.stem), "num_srns": len(data.get("NodeData", [])),
                                  "name": f.name})
                except (json.JSONDecodeError, OSError):
                    continue
            self._send(200, {"Batch List": items})
        elif parts == ["api", "v1", "batch", "jobs"]:
            qs = parse_qs(url.query)
            if "start_time" not in qs or "stop_time" not in qs:
                self._send(400, {"detail": "start_time and stop_time are required"})
                return
            lo, hi = float(qs["start_time"][0]), float(qs["stop_time"][0])
            out: dict[str, list] = {"complete": [], "pending": [], "active": []}
            with st.lock:
                for job in st.jobs:
                    if lo <= job["enter_queue_time"] <= hi:
                        key = {"queued": "pending", "active": "active"}.get(job["job_status"], "complete")
                        out[key].append(job)
            self._send(200, out)
        else:
            self._send(404, {"detail": "Not found."})

    def do_POST(self) -> None:
        st = self.server.state
        st.requests.append(("POST", self.path))
        if not self._auth_ok():
            return
        parts = [p for p in urlparse(self.path).path.split("/") if p]
        if parts != ["api", "v1", "batch", "jobs"]:
            self._send(404, {"detail": "Not found."})
            return
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            name, filename, priority = body["name"], body["filename"], str(body["priority"])
        except (json.JSONDecodeError, KeyError, TypeError):
            self._send(400, "Invalid request: name, filename and priority are required")
            return
        path = st.batch_dir / filename
        if not path.exists() and (st.batch_dir / (filename + ".json")).exists():
            path = st.batch_dir / (filename + ".json")
        if not path.exists():
            self._send(
                400, "Invalid Batch JSON config file with error:FileNotFoundError(2, 'No such file or directory')"
            )
            return
        with st.lock:
            job = {
                "expire_time": 999999999.0,
                "num_retries": 0,
                "file_name": filename,
                "job_id": st.next_job,
                "token_cost": 0,
                "enter_queue_time": time.time(),
                "job_status": "queued",
                "priority": int(priority),
                "max_retries": 5,
                "performer_id": st.user,
                "name": name,
            }
            st.next_job += 1
            st.jobs.append(job)
        self._send(200, None)

    def do_DELETE(self) -> None:
        st = self.server.state
        st.requests.append(("DELETE", self.path))
        if not self._auth_ok():
            return
        parts = [p for p in urlparse(self.path).path.split("/") if p]
        if parts[:3] == ["api", "v1", "reservations"] and len(parts) == 4 and parts[3] in st.reservations:
            del st.reservations[parts[3]]
            self._send(200, None)
        else:
            self._send(400, "Error Querying Database for Tokens")


class _Server(ThreadingHTTPServer):
    state: RestState
    daemon_threads = True


class RestStandin:
    """Start with ``RestStandin(state, tmpdir).start()``; ``url`` and ``cert`` for the client."""

    def __init__(self, state: RestState, directory: Path) -> None:
        self.state = state
        self.cert, self.key = make_cert(directory)
        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.state = state
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> RestStandin:
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
