"""The explorer's HTTP side: the page's static files and the JSON endpoints, on the standard
library's ``ThreadingHTTPServer`` (one thread per connection; the work itself runs in the
explorer's pools, so a request thread only waits, at most ``wait`` seconds, then answers 202
with the job's progress for the page to ask again).

=================================  ==================================================================
``GET /``, ``/static/NAME``        the page (only the files shipped in ``static/``)
``GET /api/models``                the models, the default one, which views are available
``GET /api/samples``               the shipped images offered
``GET /api/thumbnail?image=``      a small picture of one
``POST /api/upload``               an image file as the body -> ``{"image": "upload:ID"}``
``GET /api/predict``               ``model``, ``image``: top-5 classes, the layers
``GET /api/activations``           ``model``, ``image``, ``layer``: the activation grid
``GET /api/run``                   ``technique``, ``model``, ``image`` and the technique's options
``GET /api/inspect``               ``model``, ``image``, ``target`` or ``layer`` + ``unit``
``GET /api/jobs/KEY``              a view's state: running (with progress), done, or its error
``GET /api/pictures/KEY/NAME.png`` a picture of a view
``GET /api/files/KEY[/NAME]``      the files ``Result.save`` writes for a view (PNG figures, JSON)
=================================  ==================================================================

Every view endpoint also takes ``wait`` (seconds, 0 to 30; default 1). Bad input is answered
with a 4xx status and ``{"error": message}``. Paths are matched against fixed patterns and names
the explorer made itself; nothing the page sends is used as a file name. When bound to a
loopback address, requests must name it in their ``Host`` header (a web page elsewhere cannot
reach the explorer through DNS rebinding).
"""

import contextlib
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from methods.explore.explorer import UPLOAD_LIMIT, RequestError

__all__ = ["STATIC", "make_server", "running"]

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".png": "image/png", ".json": "application/json"}

POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

KEY = r"[0-9a-f]{16}"
COMMON = {"model", "image", "wait"}


class Handler(BaseHTTPRequestHandler):
    server_version = "minigrad-explorer"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (delayed ACKs)

    def log_message(self, format, *args):  # quiet unless asked: the page polls many times a second
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        self._dispatch(self._get)

    def do_POST(self):
        self._dispatch(self._post)

    def _dispatch(self, route):
        try:
            try:
                self._check_host()
                url = urlsplit(self.path)
                route(url.path, self._query(url.query))
            except RequestError as error:
                self._json(error.status, {"error": str(error)})
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as error:  # noqa: BLE001 - a bug in the explorer: say so, keep serving
                traceback.print_exception(error, file=sys.stderr)
                self._json(500, {"error": f"internal error: {type(error).__name__}: {error}"})
        except (BrokenPipeError, ConnectionResetError):  # the page went away (a new image chosen)
            self.close_connection = True

    def _check_host(self):
        names = self.server.host_names
        if names is None:
            return
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.strip("[]") not in names:
            raise RequestError(400, f"this explorer answers requests for {', '.join(sorted(names))} only")

    @staticmethod
    def _query(text):
        if len(text) > 8192:
            raise RequestError(414, "the query is too long")
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=64)
        except ValueError as error:
            raise RequestError(400, f"malformed query: {error}") from None
        query = {}
        for name, value in pairs:
            if name in query:
                raise RequestError(400, f"parameter {name!r} is given twice")
            query[name] = value
        return query

    # ---- routes -----------------------------------------------------------------------------------
    def _get(self, path, query):
        explorer = self.server.explorer
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/api/models":
            self._expect(query, set())
            default = explorer.default_model
            return self._json(200, {"models": explorer.allowed, "default": default,
                                    "image": explorer.default_image(default), "views": explorer.views(),
                                    "options": explorer.options()})
        if path == "/api/samples":
            self._expect(query, set())
            return self._json(200, {"samples": explorer.samples()})
        if path == "/api/thumbnail":
            self._expect(query, {"image"}, {"image"})
            return self._send(200, explorer.thumbnail(query["image"]), "image/png")
        if path == "/api/predict":
            self._expect(query, COMMON, {"model", "image"})
            return self._view(explorer.predict(query["model"], query["image"]), query)
        if path == "/api/activations":
            self._expect(query, COMMON | {"layer"}, {"model", "image", "layer"})
            return self._view(explorer.activations(query["model"], query["image"], query["layer"]), query)
        if path == "/api/run":
            options = {k: v for k, v in query.items() if k not in COMMON | {"technique"}}
            self._expect(query, set(query), {"technique", "model"})
            job = explorer.technique(query["technique"], query["model"], query.get("image", ""), options)
            return self._view(job, query)
        if path == "/api/inspect":
            options = {k: v for k, v in query.items() if k not in COMMON}
            self._expect(query, set(query), {"model", "image"})
            return self._view(explorer.inspect(query["model"], query["image"], options), query)
        match = re.fullmatch(rf"/api/jobs/({KEY})", path)
        if match:
            self._expect(query, {"wait"})
            return self._view(explorer.job(match[1]), query)
        match = re.fullmatch(rf"/api/pictures/({KEY})/([A-Za-z0-9_-]{{1,64}})\.png", path)
        if match:
            self._expect(query, set())
            return self._send(200, explorer.picture(match[1], match[2]), "image/png")
        match = re.fullmatch(rf"/api/files/({KEY})(?:/([A-Za-z0-9_.-]{{1,128}}))?", path)
        if match:
            self._expect(query, set())
            if match[2] is None:
                return self._json(200, {"files": [{"name": name, "url": f"/api/files/{match[1]}/{name}"}
                                                  for name in explorer.files(match[1])]})
            with open(explorer.file(match[1], match[2]), "rb") as handle:
                body = handle.read()
            kind = TYPES.get(os.path.splitext(match[2])[1], "application/octet-stream")
            return self._send(200, body, kind, {"Content-Disposition": f'attachment; filename="{match[2]}"'})
        raise RequestError(404, f"no such page or endpoint: {path[:200]}")

    def _post(self, path, query):
        if path != "/api/upload":
            status = 405 if path.startswith("/api/") else 404
            raise RequestError(status, f"POST is for /api/upload, not {path[:200]}")
        self._expect(query, set())
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise RequestError(411, "send the image with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise RequestError(411, "send the image with a Content-Length") from None
        if length > UPLOAD_LIMIT or length < 0:
            self.close_connection = True  # the body is not read
            raise RequestError(413, f"the upload has {length} bytes; at most {UPLOAD_LIMIT} are accepted")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, "the upload ended early")
        return self._json(200, self.server.explorer.upload(body))

    @staticmethod
    def _expect(query, allowed, required=()):
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            raise RequestError(400, f"unknown parameter(s) {', '.join(map(repr, unknown))}; "
                                    f"this endpoint takes: {', '.join(sorted(allowed)) or 'none'}")
        missing = sorted(set(required) - set(query))
        if missing:
            raise RequestError(400, f"missing parameter(s): {', '.join(missing)}")

    def _view(self, job, query):
        text = query.get("wait", "1")
        try:
            wait = float(text)
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= 30:
            raise RequestError(400, f"wait must be a number of seconds from 0 to 30, got {text!r}")
        status, body = self.server.explorer.state(job, wait)
        self._json(status, body)

    def _static(self, name):
        path = self.server.static.get(name)
        if path is None:
            raise RequestError(404, f"no such file: {name[:200]}")
        with open(path, "rb") as handle:
            body = handle.read()
        extra = {"Content-Security-Policy": POLICY} if name.endswith(".html") else {}
        self._send(200, body, TYPES[os.path.splitext(name)[1]], extra, cache="no-cache")

    # ---- answers ------------------------------------------------------------------------------------
    def _json(self, status, body):
        self._send(status, json.dumps(body, allow_nan=False).encode("utf-8"), "application/json; charset=utf-8")

    def _send(self, status, body, kind, headers=None, cache="no-store"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, explorer, host, port, verbose=False):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), Handler)
        self.explorer, self.verbose = explorer, verbose
        self.static = {name: os.path.join(STATIC, name) for name in os.listdir(STATIC)
                       if os.path.splitext(name)[1] in TYPES and os.path.isfile(os.path.join(STATIC, name))
                       and not os.path.islink(os.path.join(STATIC, name))}
        self.host_names = None
        if _loopback(host):
            self.host_names = {"localhost", "127.0.0.1", "::1", host.lower()}

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def _loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def make_server(explorer, host="127.0.0.1", port=8000, verbose=False):
    """A :class:`ThreadingHTTPServer` serving ``explorer`` on ``host:port`` (port 0: any free
    one; ``server.url`` says which); ``server.serve_forever()`` runs it."""
    return Server(explorer, host, port, verbose)


@contextlib.contextmanager
def running(explorer, host="127.0.0.1", port=0):
    """Serve ``explorer`` from a background thread inside the block (in a notebook, in the tests);
    yields the server (``server.url``). The explorer stays open: close it yourself."""
    server = make_server(explorer, host, port)
    thread = threading.Thread(target=server.serve_forever, name="explorer-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
