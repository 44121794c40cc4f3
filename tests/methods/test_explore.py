"""The explorer's server (issue 17), through http.client against a server on port 0 in a thread:
every endpoint answers what the techniques compute, bad input gets a 4xx with a message, uploads
that are too large, not images or decompression bombs are refused, no path escapes the
explorer's folders, nothing is read or written outside them, and a slow view never blocks
another."""

import http.client
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import zlib
from urllib.parse import urlencode

import numpy as np
import pytest

import methods
from methods.explore import explorer as explorer_module
from methods.explore.explorer import UPLOAD_LIMIT, Explorer
from methods.explore.server import STATIC, running
from methods.lib.datasets import load_images
from methods.lib.features import layer_activations
from methods.lib.images import colorize, to_uint8
from methods.lib.options import TECHNIQUES
from minigrad import models

Image = pytest.importorskip("PIL.Image")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT = 120  # sample images the patches scan (all 2,000 would only add time)


@pytest.fixture(scope="module")
def served():
    explorer = Explorer("fashion-vgg", dataset_limit=LIMIT)
    with running(explorer) as server:
        yield server
    explorer.close()


@pytest.fixture(scope="module")
def model():
    return models.load("fashion-vgg")


def request(server, path, method="GET", body=None, headers=None):
    """(status, headers, body): JSON bodies decoded, others as bytes."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, dict(response.getheaders()), json.loads(data) if kind.startswith("application/json") \
            else data
    finally:
        connection.close()


def get(server, path, **params):
    """An endpoint's JSON answer; a view is waited for (asked again while it runs)."""
    status, _, body = request(server, f"{path}?{urlencode(params)}" if params else path)
    while status == 202:
        status, _, body = request(server, f"/api/jobs/{body['job']}?wait=30")
    return status, body


def picture(server, url):
    status, headers, data = request(server, url)
    assert status == 200 and headers["Content-Type"] == "image/png", (status, data)
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header(width, height):
    """A PNG whose header claims width x height pixels (one short row of data): what a
    decompression bomb looks like before it is decoded."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


def sample_input(model, spec="sample:0"):
    return load_images(model, [spec])[0]


# ---- the page --------------------------------------------------------------------------------------
def test_the_page_and_its_files_are_served_with_a_strict_policy(served):
    status, headers, page = request(served, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="/static/explore.js"' in page and b'href="/static/explore.css"' in page
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    for name, kind in (("explore.js", "text/javascript"), ("explore.css", "text/css")):
        status, headers, body = request(served, f"/static/{name}")
        with open(os.path.join(STATIC, name), "rb") as handle:
            assert status == 200 and headers["Content-Type"].startswith(kind) and body == handle.read()
    assert b"http://" not in page and b"https://" not in page  # nothing fetched from elsewhere: works offline


def test_models_samples_and_thumbnails(served):
    status, body = get(served, "/api/models")
    assert status == 200 and body["default"] == "fashion-vgg" and body["image"] == "sample:0"
    assert set(models.available()) <= set(body["models"])
    assert body["views"]["visualize-unit"] == ("visualize-unit" in TECHNIQUES) and body["views"]["saliency"]
    assert body["options"]["occlusion"] == [o.name for o in TECHNIQUES["occlusion"].options]
    assert ("visualize-unit" in body["options"]) == body["views"]["visualize-unit"]
    status, body = get(served, "/api/samples")
    specs = [s["image"] for s in body["samples"]]
    assert "sample:chelsea" in specs and len([s for s in specs if s.split(":")[1].isdigit()]) == 10
    for spec in ("sample:chelsea", specs[-1]):
        thumb = picture(served, f"/api/thumbnail?image={spec}")
        assert max(thumb.shape[:2]) == explorer_module.THUMBNAIL and thumb.std() > 0


# ---- the views ----------------------------------------------------------------------------------
def test_predict_gives_the_models_top_five_and_layers(served, model):
    status, body = get(served, "/api/predict", model="fashion-vgg", image="sample:0")
    assert status == 200 and body["status"] == "done"
    x = sample_input(model)
    expected = model.decode(model(x), k=5)[0]
    assert [t["index"] for t in body["top"]] == [i for i, _, _ in expected]
    assert np.allclose([t["probability"] for t in body["top"]], [p for _, _, p in expected], atol=1e-6)
    assert body["top"][0]["label"] == "Sneaker" and body["layers"] == list(model.layer_names)
    assert body["layer"] == "relu3_1" and body["labels"] == list(model.labels)
    assert np.array_equal(picture(served, body["input"]), model.deprocess(x)[0])


def test_the_activation_grid_holds_every_channel_on_one_scale(served, model):
    status, body = get(served, "/api/activations", model="fashion-vgg", image="sample:0", layer="relu2_1")
    a = layer_activations(model, sample_input(model), "relu2_1")[0]
    assert status == 200 and body["kind"] == "channels" and body["shape"] == list(a.shape)
    assert body["channels"] == a.shape[0] and body["tile"] == list(a.shape[1:])
    assert np.allclose(body["maxima"], a.reshape(len(a), -1).max(axis=1), rtol=1e-6)
    assert np.isclose(body["colorbar"]["low"], a.min()) and np.isclose(body["colorbar"]["high"], a.max())
    sprite = picture(served, body["sprite"])
    rows = -(-body["channels"] // body["columns"])
    assert sprite.shape == (rows * a.shape[1], body["columns"] * a.shape[2])
    c = 5
    tile = sprite[(c // body["columns"]) * 14: (c // body["columns"] + 1) * 14, (c % body["columns"]) * 14:][:, :14]
    expected = to_uint8(a, a.min(), a.max())[c]
    assert np.array_equal(tile, expected)
    assert np.array_equal(picture(served, f"{body['channel_url']}{c}.png"), expected)  # the enlarged channel
    status, _, missing = request(served, f"{body['channel_url']}{len(a)}.png")
    assert status == 404 and "no picture" in missing["error"]


def test_a_fully_connected_layer_is_one_tile_of_units(served, model):
    status, body = get(served, "/api/activations", model="fashion-vgg", image="sample:0", layer="fc7")
    a = layer_activations(model, sample_input(model), "fc7")[0]
    assert status == 200 and body["kind"] == "units" and body["units"] == a.size
    assert np.allclose(body["values"], a, rtol=1e-6)
    sprite = picture(served, body["sprite"])
    assert sprite.shape[1] == body["columns"] and sprite.size >= a.size


def test_the_maps_are_the_registered_techniques_drawn_as_their_figures_draw_them(served, model):
    x = sample_input(model)
    expected = {"saliency": methods.saliency(model, x, target=5, segment=False),
                "deconvnet": methods.deconvnet(model, x, target=5),
                "guided-backprop": methods.guided_backprop(model, x, target=5),
                "grad-cam": methods.grad_cam(model, x, target=5, guided=False)}
    for name, result in expected.items():
        extra = {"segment": "false"} if name == "saliency" else {"guided": "false"} if name == "grad-cam" else {}
        status, body = get(served, "/api/run", technique=name, model="fashion-vgg", image="sample:0", target=5, **extra)
        assert status == 200 and body["technique"] == name and body["params"]["target"] == 5
        panels = result.panels(0)
        assert body["subtitle"] == panels[0].title and body["subtitle"].startswith("Sandal (5)")
        assert [p["title"] for p in body["panels"]] == [p.title for p in panels[1:]]
        shown = next(p for p in body["panels"] if p["values"] and not p["image"])  # the map with its colour bar
        panel = next(p for p in panels if p.title == shown["title"])
        values = result.magnitude(0)
        assert np.isclose(shown["colorbar"]["low"], values.min()) and np.isclose(shown["colorbar"]["high"], values.max())
        assert np.array_equal(picture(served, shown["values"]), colorize(values, panel.cmap))
        assert len(shown["colorbar"]["colours"]) == 11 and shown["colorbar"]["label"] == panel.label


def test_deconvnet_and_guided_backprop_follow_a_selected_unit(served, model):
    x = sample_input(model)
    for name, function in (("deconvnet", methods.deconvnet), ("guided-backprop", methods.guided_backprop)):
        status, body = get(served, "/api/run", technique=name, model="fashion-vgg", image="sample:0", layer="relu2_1",
                           unit=3)
        assert status == 200 and body["subtitle"] == "relu2_1, unit 3" and body["params"]["unit"] == 3
        magnitude = function(model, x, layer="relu2_1", unit=3).magnitude(0)
        shown = body["panels"][-1]
        assert np.isclose(shown["colorbar"]["high"], magnitude.max())


def test_the_backprop_inspector_shows_where_the_rules_part(served, model):
    status, body = get(served, "/api/inspect", model="fashion-vgg", image="sample:0")
    assert status == 200 and body["rules"] == ["standard", "deconvnet", "guided"]
    names = [row["name"] for row in body["rows"]]
    assert names == list(reversed(model.layer_names)) + ["image"]
    top = body["rows"][0]
    assert all(np.isclose(n, 1.0) for n in top["norms"].values()) and all(c == 1.0 for c in top["cosine"].values())
    assert body["parting"] == "fc7"  # the first output below a ReLU (relu7), going down
    x = sample_input(model)
    for rule in body["rules"]:
        expected = methods.lib.gradients.backprop(model, x, rule).gradients[0]
        assert np.isclose(body["rows"][-1]["norms"][rule], np.linalg.norm(expected), rtol=1e-4)
        assert picture(served, body["rows"][-1]["maps"][rule]).shape == (28, 28, 3)
    status, body = get(served, "/api/inspect", model="fashion-vgg", image="sample:0", layer="relu2_1", unit=3)
    assert status == 200 and body["rows"][0]["name"] == "relu2_1" and body["parting"] == "conv2_1"
    assert body["quantity"] == "relu2_1 unit 3"


def test_slow_views_report_progress_and_are_cached(served, model, monkeypatch):
    """Top patches, eight images per forward pass: the job is polled while it runs and reports the
    technique's own progress; asked again, the same job answers at once."""
    report = explorer_module.Job.report

    def slowly(job, *args):  # 50 ms per step, so that polling sees the steps on any machine
        threading.Event().wait(0.05)
        report(job, *args)

    monkeypatch.setattr(explorer_module.Job, "report", slowly)
    params = {"technique": "patches", "model": "fashion-vgg", "layer": "relu1_1", "channel": 3, "batch_size": 8,
              "k": 4}
    status, _, body = request(served, f"/api/run?{urlencode({'wait': 0, **params})}")
    seen = []
    while status == 202:
        assert body["status"] == "running" and body["view"] == "patches"
        if body["progress"]:
            seen.append(body["progress"])
        status, _, body = request(served, f"/api/jobs/{body['job']}?wait=0.05")
    assert status == 200, body
    assert len(seen) > 1 and all(p["total"] == LIMIT and 0 <= p["count"] <= LIMIT for p in seen)
    assert seen[-1]["step"] == "patches relu1_1:3"
    result = methods.maximally_activating_patches(model, methods.lib.datasets.load_dataset(model, "sample", LIMIT),
                                                  layer="relu1_1", channel=3, k=4, batch_size=8)
    assert [p["image"] for p in body["summary"]["patches"]] == [p["image"] for p in result.patches]
    assert body["figures"] and picture(served, body["figures"][0]["image"]).ndim == 3
    again, _, cached = request(served, f"/api/run?{urlencode({'wait': 0, **params})}")
    assert again == 200 and cached["job"] == body["job"]


def test_the_regularized_visualization_runs_when_registered_and_is_unavailable_otherwise(served):
    params = {"technique": "visualize-unit", "model": "fashion-vgg", "layer": "conv2_1", "unit": 3}
    if "visualize-unit" not in TECHNIQUES:
        status, body = get(served, "/api/run", **params)
        assert status == 404 and "visualize-unit" in body["error"] and "not registered" in body["error"]
        return
    status, body = get(served, "/api/run", **params, steps=3, restarts=1)
    assert status == 200 and body["figures"] and body["params"]["steps"] == 3


def test_occlusion_on_request(served):
    status, body = get(served, "/api/run", technique="occlusion", model="fashion-vgg", image="sample:0", stride=7)
    assert status == 200 and body["subtitle"].startswith("Sneaker (7)") and body["params"]["stride"] == 7
    assert any(p["colorbar"] for p in body["panels"])


def test_every_picture_downloads_as_the_files_the_command_line_writes(served):
    for path, params, technique in (
            ("/api/run", {"technique": "saliency", "image": "sample:0", "segment": "false"}, "saliency"),
            ("/api/activations", {"image": "sample:0", "layer": "relu1_1"}, "activations"),
            ("/api/inspect", {"image": "sample:0"}, "backprop-inspector")):
        status, body = get(served, path, model="fashion-vgg", **params)
        status, _, listing = request(served, f"/api/files/{body['job']}")
        names = [f["name"] for f in listing["files"]]
        assert status == 200 and f"{technique}.json" in names and any(n.endswith(".png") for n in names)
        status, headers, record = request(served, f"/api/files/{body['job']}/{technique}.json")
        assert status == 200 and headers["Content-Disposition"] == f'attachment; filename="{technique}.json"'
        assert record["technique"] == technique and record["inputs"] == {"images": ["sample:0"]}
        png = next(f for f in listing["files"] if f["name"].endswith(".png"))
        assert picture(served, png["url"]).size > 0
    assert record["params"]["rules"] == ["standard", "deconvnet", "guided"]


# ---- bad input ---------------------------------------------------------------------------------
BAD = [
    ("/api/predict?model=nope&image=sample:0", 400, "unknown model 'nope'"),
    ("/api/predict?model=/etc/passwd&image=sample:0", 400, "unknown model"),
    ("/api/predict?model=fashion-vgg&image=/etc/passwd", 400, "unknown image '/etc/passwd'"),
    ("/api/predict?model=fashion-vgg&image=../../methods/explore/server.py", 400, "unknown image"),
    ("/api/predict?model=fashion-vgg&image=sample:2000", 400, "sample:0..1999"),
    ("/api/predict?model=fashion-vgg&image=sample:../x", 400, "unknown image"),
    ("/api/predict?model=fashion-vgg&image=upload:0123456789abcdef", 404, "no upload"),
    ("/api/predict?model=fashion-vgg", 400, "missing parameter(s): image"),
    ("/api/predict?model=fashion-vgg&image=sample:0&colour=red", 400, "unknown parameter(s) 'colour'"),
    ("/api/predict?model=fashion-vgg&image=sample:0&image=sample:1", 400, "given twice"),
    ("/api/predict?model=fashion-vgg&image=sample:0&wait=soon", 400, "wait must be"),
    ("/api/predict?model=fashion-vgg&image=sample:0&wait=100", 400, "wait must be"),
    ("/api/activations?model=fashion-vgg&image=sample:0&layer=conv9", 400, "unknown layer 'conv9'"),
    ("/api/run?technique=nope&model=fashion-vgg&image=sample:0", 404, "'nope' is not available"),
    ("/api/run?technique=hog&model=fashion-vgg&image=sample:0", 404, "the views are"),
    ("/api/run?technique=occlusion&model=fashion-vgg&image=sample:0&size=0", 400, "size must be an integer >= 1"),
    ("/api/run?technique=occlusion&model=fashion-vgg&image=sample:0&size=big", 400, "size must be"),
    ("/api/run?technique=saliency&model=fashion-vgg&image=sample:0&segment=maybe", 400, "segment must be true or false"),
    ("/api/run?technique=saliency&model=fashion-vgg&image=sample:0&radius=3", 400, "unknown parameter 'radius'"),
    ("/api/run?technique=grad-cam&model=fashion-vgg&image=sample:0&target=10", 400, "target class 10 is out of range"),
    ("/api/run?technique=grad-cam&model=fashion-vgg&image=sample:0&target=Pyjamas", 400, "unknown class name"),
    ("/api/run?technique=deconvnet&model=fashion-vgg&image=sample:0&layer=relu2_1&unit=999", 400,
     "channel 999 is out of range"),
    ("/api/run?technique=patches&model=fashion-vgg&layer=relu2_1&channel=999", 400, "channel 999 out of range"),
    ("/api/inspect?model=fashion-vgg&image=sample:0&target=3&layer=relu2_1", 400, "either a target class or a layer"),
    ("/api/inspect?model=fashion-vgg&image=sample:0&unit=-1", 400, "unit must be"),
    ("/api/jobs/0123456789abcdef", 404, "no view"),
    ("/api/jobs/../../etc/passwd", 404, "no such page"),
    ("/api/nothing", 404, "no such page"),
    ("/api/models?x=1", 400, "unknown parameter"),
    ("/api/thumbnail?image=/etc/hostname", 400, "unknown image"),
]


@pytest.mark.parametrize("path, status, message", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_with_a_message(served, path, status, message):
    got, headers, body = request(served, path)
    assert got == status and headers["Content-Type"].startswith("application/json"), (got, body)
    assert message in body["error"], body


def test_pictures_and_files_of_a_view_are_only_those_it_made(served):
    status, body = get(served, "/api/run", technique="saliency", model="fashion-vgg", image="sample:0",
                       segment="false")
    assert status == 200
    key = body["job"]
    for path, code in ((f"/api/pictures/{key}/nope.png", 404), (f"/api/pictures/{key}/p0-values.PNG", 404),
                       (f"/api/files/{key}/saliency.json.bak", 404), (f"/api/files/{key}/.hidden", 404),
                       ("/api/pictures/0123456789abcdef/p0-values.png", 404), (f"/api/files/{key}/x/y", 404)):
        got, _, answer = request(served, path)
        assert got == code and answer["error"], path


def test_post_is_for_uploads_only_and_other_methods_are_refused(served):
    assert request(served, "/api/predict?model=fashion-vgg&image=sample:0", method="POST", body=b"")[0] == 405
    assert request(served, "/", method="POST", body=b"")[0] == 404
    assert request(served, "/", method="DELETE")[0] == 501


def test_requests_naming_another_host_are_refused(served):
    status, _, body = request(served, "/api/models", headers={"Host": "evil.example"})
    assert status == 400 and "answers requests for" in body["error"]
    assert request(served, "/api/models", headers={"Host": f"localhost:{served.server_address[1]}"})[0] == 200


# ---- paths ------------------------------------------------------------------------------------
TRAVERSALS = ["/static/../explorer.py", "/static/..%2fexplorer.py", "/static/%2e%2e/server.py", "/static//etc/passwd",
              "/static/", "/static/.", "/../../etc/passwd", "/static/explore.js/../../server.py", "/%2e%2e/server.py",
              "/static/explore.js%00.png", "/static\\..\\server.py", "/api/files/0123456789abcdef/..%2f..%2fserver.py",
              "/api/pictures/0123456789abcdef/..%2Fsprite.png", "//etc/passwd", "/index.html/../server.py"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_leaves_the_explorers_files(served, path):
    status, _, body = request(served, path)
    assert status == 404
    assert "def make_server" not in json.dumps(body) and "root:" not in json.dumps(body)


# ---- uploads --------------------------------------------------------------------------------------
def test_an_uploaded_image_is_kept_in_the_explorers_folder_and_explained(served):
    pixels = np.zeros((60, 40, 3), np.uint8)
    pixels[10:50, 10:30] = (250, 240, 230)
    status, _, body = request(served, "/api/upload", method="POST", body=png_bytes(pixels),
                              headers={"Content-Type": "image/png"})
    assert status == 200 and body["image"].startswith("upload:") and (body["width"], body["height"]) == (40, 60)
    uploads = os.path.join(served.explorer.folder, "uploads")
    assert body["image"].split(":")[1] in os.listdir(uploads)
    status, predicted = get(served, "/api/predict", model="fashion-vgg", image=body["image"])
    assert status == 200 and predicted["notes"] and all("upload:" in note for note in predicted["notes"])
    assert all(served.explorer.folder not in note for note in predicted["notes"])
    assert picture(served, f"/api/thumbnail?image={body['image']}").shape[0] == explorer_module.THUMBNAIL


@pytest.mark.parametrize("body, message", [
    (b"", "the upload is empty"),
    (b"GIF89a but not really an image", "cannot read the image"),
    (b"%PDF-1.4 hello", "cannot read the image"),
    (png_header(9000, 9000), "81 megapixels, more than the 64 allowed"),  # below Pillow's own bomb check
    (png_header(30000, 30000), "refused, the image is larger than"),  # Pillow's check, from the header too
])
def test_uploads_that_are_not_images_or_are_bombs_are_refused_from_the_header(served, body, message):
    before = set(os.listdir(os.path.join(served.explorer.folder, "uploads")))
    status, _, answer = request(served, "/api/upload", method="POST", body=body)
    assert status == 400 and message in answer["error"], answer
    assert served.explorer.folder not in answer["error"]
    assert set(os.listdir(os.path.join(served.explorer.folder, "uploads"))) == before


def test_an_upload_larger_than_the_limit_is_refused_before_it_is_read(served):
    host, port = served.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.putrequest("POST", "/api/upload")
    connection.putheader("Content-Length", str(UPLOAD_LIMIT + 1))
    connection.endheaders()  # no body is sent: the answer must not wait for it
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413 and f"at most {UPLOAD_LIMIT}" in answer["error"]
    status, _, answer = request(served, "/api/upload", method="POST", body=iter([b"abc"]),
                                headers={"Transfer-Encoding": "chunked"})
    assert status == 411 and "Content-Length" in answer["error"]


# ---- nothing read or written outside the explorer's folders -----------------------------------------
AUDIT = {"recording": False, "events": []}


def _audit(event, args):
    if AUDIT["recording"] and event in ("open", "os.remove", "os.rename", "os.mkdir", "os.rmdir", "shutil.rmtree",
                                        "os.symlink", "os.link", "os.truncate", "os.chmod"):
        AUDIT["events"].append((event, args))


sys.addaudithook(_audit)


def test_nothing_is_read_or_written_outside_the_explorers_folders(tmp_path):
    """Every file opened for writing, created, renamed or removed while the server works lies in
    its temporary folder; a file planted outside is never opened, whatever the request names;
    every file opened for reading is the explorer's, the package's or the Python installation's."""
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    explorer = Explorer("fashion-vgg", dataset_limit=16)
    AUDIT["events"].clear()
    AUDIT["recording"] = True
    try:
        with running(explorer) as server:
            image = request(server, "/api/upload", method="POST", body=png_bytes(np.full((30, 30), 200, np.uint8)))[2]
            for path, params in (("/api/predict", {"image": image["image"]}),
                                 ("/api/run", {"technique": "saliency", "image": "sample:0", "segment": "false"}),
                                 ("/api/run", {"technique": "patches", "layer": "relu1_1", "k": 2}),
                                 ("/api/inspect", {"image": "sample:1"})):
                status, body = get(server, path, model="fashion-vgg", **params)
                assert status == 200
                assert request(server, f"/api/files/{body['job']}")[0] == (404 if path == "/api/predict" else 200)
            for path in (f"/api/predict?model=fashion-vgg&image={secret}", f"/api/predict?model={secret}&image=sample:0",
                         f"/static/{os.path.relpath(secret, STATIC)}", f"/api/thumbnail?image={secret}",
                         f"/api/run?technique=patches&model=fashion-vgg&layer=relu1_1&dataset={tmp_path}"):
                assert request(server, path)[0] in (400, 404)
    finally:
        AUDIT["recording"] = False
        events = list(AUDIT["events"])
        folder = explorer.folder
        explorer.close()
    assert not os.path.exists(folder)
    inside = os.path.realpath(folder) + os.sep
    roots = [os.path.realpath(p) + os.sep for p in (folder, ROOT, sys.prefix, sys.base_prefix, sys.exec_prefix)]
    roots += [os.path.realpath(p) + os.sep for p in _library_folders()]
    writes, reads = [], []
    for event, args in events:
        if event == "open":
            path, mode, flags = args
            if not isinstance(path, (str, bytes, os.PathLike)):
                continue
            path = os.path.realpath(os.fsdecode(path))
            writing = (mode and any(c in mode for c in "wax+")) or (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            (writes if writing else reads).append(path)
        elif args and isinstance(args[0], (str, bytes, os.PathLike)):
            writes.extend(os.path.realpath(os.fsdecode(a)) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike)))
    assert writes and all(p.startswith(inside) or p == inside[:-1] for p in writes), writes
    assert any(p.startswith(inside) for p in reads)  # the upload, read back: reads are recorded
    assert str(secret) not in reads and os.path.realpath(secret) not in reads
    assert all(any(p.startswith(r) for r in roots) for p in reads), sorted({p for p in reads
                                                                             if not any(p.startswith(r) for r in roots)})


def _library_folders():
    """Where the libraries the explorer draws with keep their data (matplotlib's fonts and cache)."""
    import matplotlib

    return [matplotlib.get_data_path(), matplotlib.get_cachedir(), matplotlib.get_configdir()]


# ---- responsiveness: a slow view never blocks another --------------------------------------------------
def test_a_slow_view_never_blocks_another(monkeypatch):
    """The top patches are held back until the test lets them go: meanwhile the prediction of
    another image, an activation grid and a map all answer, and the slow job reports it runs."""
    gate, entered = threading.Event(), threading.Event()
    spec = TECHNIQUES["patches"]
    scan = spec.function

    def held(*args, **kwargs):
        entered.set()
        assert gate.wait(60)
        return scan(*args, **kwargs)

    monkeypatch.setattr(spec, "function", held)
    explorer = Explorer("fashion-vgg", dataset_limit=16)
    try:
        with running(explorer) as server:
            status, _, slow = request(server, "/api/run?technique=patches&model=fashion-vgg&layer=relu1_1&wait=0")
            assert status == 202 and entered.wait(60)
            for path, params in (("/api/predict", {"image": "sample:3"}), ("/api/activations", {"image": "sample:3",
                                 "layer": "conv1_1"}), ("/api/run", {"technique": "grad-cam", "image": "sample:3"})):
                assert get(server, path, model="fashion-vgg", **params)[0] == 200
            status, _, still = request(server, f"/api/jobs/{slow['job']}?wait=0")
            assert status == 202 and still["status"] == "running"
            gate.set()
            status, done = get(server, f"/api/jobs/{slow['job']}")
            assert status == 200 and done["figures"]
    finally:
        gate.set()
        explorer.close()


def test_closing_stops_a_running_loop_and_removes_the_folder():
    explorer = Explorer("fashion-vgg")
    job = explorer.technique("patches", "fashion-vgg", "", {"layer": "relu1_1", "batch_size": "1"})
    while job.progress is None and not job.future.done():
        threading.Event().wait(0.01)
    explorer.close()
    assert not os.path.exists(explorer.folder)
    assert job.future.done() and isinstance(job.future.exception(), explorer_module.Cancelled)


# ---- the command line ------------------------------------------------------------------------------
def test_the_command_line_serves_prints_the_address_and_cleans_up_when_stopped(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "MINIGRAD_BACKEND": "reference"}
    process = subprocess.Popen([sys.executable, "-m", "methods", "explore", "--port", "0"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("minigrad explorer: http://127.0.0.1:"), line + process.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/api/models")
        assert json.loads(connection.getresponse().read())["default"] == "fashion-vgg"
        connection.close()
        assert len(os.listdir(tmp_path)) == 1  # the explorer's folder, and nothing else
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert process.returncode == 0 and os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv, message", [(["--port", "70000"], "port number from 0 to 65535"),
                                           (["--model", "no-such-model", "--port", "0"], "unknown model")])
def test_the_command_line_refuses_bad_arguments_in_one_line(argv, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "methods", "explore", *argv], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)}, check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []
