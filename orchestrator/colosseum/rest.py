"""Client of the documented Colosseum REST API (HTTPS, HTTP basic auth with the LDAP user).

Endpoints (user-documentation reservations/reserve_batch_jobs.rst; shared/reference/colosseum.md
A.1): ``GET /api/v1/reservations/<ID>``, ``GET /api/v1/batch/files/``,
``GET /api/v1/batch/jobs/?start_time=&stop_time=`` (lists ``complete`` / ``pending`` / ``active``),
``POST /api/v1/batch/jobs/`` with ``{"name", "filename", "priority"}`` (empty body on success, an
error text otherwise) and ``DELETE /api/v1/reservations/<ID>``. No documented endpoint creates an
interactive reservation; that stays on the website.

The docs use ``curl -k`` (no certificate check); ``rest_verify`` in the config chooses: true
(system CAs), false (like -k), or a CA bundle path. Only the standard library is used.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlencode

from orchestrator.colosseum.config import ColosseumConfig


class RestError(RuntimeError):
    pass


@dataclass(frozen=True)
class Reservation:
    res_id: str
    status: str
    start: float
    end: float
    duration: float
    team: str
    name: str
    srns: tuple[int, ...]
    images: dict[int, str]
    node_status: dict[int, str]
    raw: dict[str, object]

    def as_dict(self) -> dict[str, object]:
        return {
            "res_id": self.res_id,
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "start_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.start)),
            "end_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.end)),
            "duration_s": self.duration,
            "team": self.team,
            "name": self.name,
            "srns": list(self.srns),
            "images": {str(k): v for k, v in self.images.items()},
            "node_status": {str(k): v for k, v in self.node_status.items()},
        }


def parse_reservation(data: object, res_id: str) -> Reservation:
    item = data[0] if isinstance(data, list) and data else data
    if not isinstance(item, dict):
        raise RestError(f"reservation {res_id}: unexpected answer {str(data)[:200]}")
    try:
        nodes = item["nodes"]
        srns = tuple(sorted(int(n["srn_id"]) for n in nodes))
        return Reservation(
            res_id=str(item.get("res_id", res_id)),
            status=str(item["res_status"]),
            start=float(item["start"]),
            end=float(item["end"]),
            duration=float(item.get("duration", float(item["end"]) - float(item["start"]))),
            team=str(item.get("team_name", "")),
            name=str(item.get("name", "")),
            srns=srns,
            images={int(n["srn_id"]): str(n.get("image", "")) for n in nodes},
            node_status={int(n["srn_id"]): str(n.get("status", "")) for n in nodes},
            raw=item,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise RestError(f"reservation {res_id}: missing or bad field {err} in {str(item)[:200]}") from None


class RestClient:
    def __init__(self, cfg: ColosseumConfig, password: str, *, timeout: float = 20.0) -> None:
        self.base = cfg.rest_url.rstrip("/")
        self.user = cfg.user
        self._auth = "Basic " + base64.b64encode(f"{cfg.user}:{password}".encode()).decode()
        self.timeout = timeout
        if cfg.rest_verify is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif isinstance(cfg.rest_verify, str):
            ctx = ssl.create_default_context(cafile=cfg.rest_verify)
        else:
            ctx = ssl.create_default_context()
        self._ctx = ctx

    def _request(self, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", self._auth)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace").strip()
            if err.code == 401:
                raise RestError(f"{method} {path}: 401 unauthorized: wrong user or password for {self.user}") from None
            raise RestError(f"{method} {path}: HTTP {err.code}: {_message(text)}") from None
        except urllib.error.URLError as err:
            raise RestError(f"{method} {self.base}{path}: {err.reason}") from None

    def _json(self, method: str, path: str, body: object | None = None) -> object:
        _, raw = self._request(method, path, body)
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise RestError(f"{method} {path}: answer is not JSON: {raw[:200]!r}") from None

    def reservation(self, res_id: str | int) -> Reservation:
        return parse_reservation(self._json("GET", f"/api/v1/reservations/{res_id}"), str(res_id))

    def batch_files(self) -> list[dict[str, object]]:
        data = self._json("GET", "/api/v1/batch/files/")
        if not isinstance(data, dict) or "Batch List" not in data:
            raise RestError(f"GET /api/v1/batch/files/: unexpected answer {str(data)[:200]}")
        return list(data["Batch List"])

    def batch_jobs(self, start_time: float, stop_time: float) -> dict[str, list[dict[str, object]]]:
        qs = urlencode({"start_time": int(start_time), "stop_time": int(stop_time)})
        data = self._json("GET", f"/api/v1/batch/jobs/?{qs}")
        if not isinstance(data, dict):
            raise RestError(f"GET /api/v1/batch/jobs/: unexpected answer {str(data)[:200]}")
        # The docs' example says "complete"; accept "completed" too.
        return {
            "pending": list(data.get("pending", [])),
            "active": list(data.get("active", [])),
            "complete": list(data.get("complete", data.get("completed", []))),
        }

    def queue_batch(self, filename: str, *, name: str | None = None, priority: int = 0) -> None:
        _status, raw = self._request(
            "POST", "/api/v1/batch/jobs/", {"name": name or filename, "filename": filename, "priority": str(priority)}
        )
        text = raw.decode(errors="replace").strip()
        if text and text not in ("null", '""', "{}"):
            raise RestError(f"POST /api/v1/batch/jobs/: {_message(text)}")

    def delete_reservation(self, res_id: str | int) -> None:
        self._request("DELETE", f"/api/v1/reservations/{res_id}")


def _message(text: str) -> str:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return text[:300]
    if isinstance(obj, dict) and "detail" in obj:
        return str(obj["detail"])
    return str(obj)[:300]
