"""Dataset scans (issue 16): a folder streams to exactly the results of the same images in memory
(patches, neighbours, t-SNE), a second run reads the cache, an interrupted scan resumes to the
uninterrupted result bit for bit, float16 stores, the top-k accumulator, a 2-worker scan the serial
one, and peak memory that does not grow with the folder (a subprocess's own peak: VmHWM, or
``resource`` where /proc is missing)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import methods
from benchmarks.scale import make_folder
from methods.lib import scan
from methods.lib.datasets import FolderImages, load_dataset
from tests.methods.tiny_models import tiny_vgg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pytest.importorskip("PIL")
    return make_folder(str(tmp_path_factory.mktemp("images")), 40, sizes=((20, 24), (30, 36)), suffix=".png")


@pytest.fixture
def forwards(monkeypatch):
    """Counts the batches the scan's works send through the model."""
    calls = []
    original = scan.layer_activations

    def counted(model, x, layer):
        calls.append(len(x))
        return original(model, x, layer)

    monkeypatch.setattr(scan, "layer_activations", counted)
    return calls


def in_memory(model, folder):
    data = load_dataset(model, folder)
    assert isinstance(data.images, FolderImages) and data.images.shape == (40, 16, 16, 1)
    return data, data._replace(images=np.asarray(data.images))


def test_a_folder_streams_to_the_results_of_its_images_in_memory(folder, forwards):
    model = tiny_vgg(channels=1, size=16)
    streamed, memory = in_memory(model, folder)
    assert streamed.names == ("class0", "class1") and list(streamed.labels[:4]) == [0, 0, 0, 0]
    for layer, per_image in (("pool1", 2), ("conv1_2", 0), ("fc3", 1)):
        a = methods.maximally_activating_patches(model, folder, layer=layer, channel=1, k=7, per_image=per_image)
        b = methods.maximally_activating_patches(model, memory, layer=layer, channel=1, k=7, per_image=per_image)
        assert a.patches == b.patches and all(np.array_equal(x, y) for x, y in zip(a.crops, b.crops))
    for queries, query_x in (([0, 21], None), (None, memory.images[5:7].transpose(0, 3, 1, 2) / np.float32(255))):
        a = methods.neighbours(model, streamed, query_x, layer="fc3", k=4, queries=queries, batch_size=6)
        b = methods.neighbours(model, memory, query_x, layer="fc3", k=4, queries=queries, batch_size=6)
        for name in ("feature_index", "feature_distance", "pixel_index", "pixel_distance"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert a.summary.keys() == b.summary.keys()
    if query_x is not None:
        assert 5 not in a.feature_index[0] and 6 not in a.pixel_index[1]  # identical images left out
    a = methods.tsne_embedding(model, folder, layer="fc3", iterations=60, exaggeration_iterations=20)
    b = methods.tsne_embedding(model, memory, layer="fc3", iterations=60, exaggeration_iterations=20)
    np.testing.assert_array_equal(a.coordinates, b.coordinates)
    np.testing.assert_array_equal(a.pictures()["embedding"], b.pictures()["embedding"])
    before = len(forwards)
    again = methods.neighbours(model, folder, layer="fc3", k=4, queries=[0, 21], batch_size=6)
    assert len(forwards) == before  # the features came from the cache: no forward pass
    np.testing.assert_array_equal(again.feature_index, methods.neighbours(
        model, memory, layer="fc3", k=4, queries=[0, 21], batch_size=6).feature_index)


def test_an_interrupted_scan_resumes_to_the_uninterrupted_result(folder, tmp_path, monkeypatch, forwards, capsys):
    model = tiny_vgg(channels=1, size=16)
    monkeypatch.setattr(scan, "SHARD_IMAGES", 8)
    interrupted = load_dataset(model, folder, cache=str(tmp_path / "a"))
    from methods.lib.features import layer_activations as original

    def stop_at_the_fifth_batch(model, x, layer):
        if len(forwards) == 4:
            raise KeyboardInterrupt
        forwards.append(len(x))
        return original(model, x, layer)

    monkeypatch.setattr(scan, "layer_activations", stop_at_the_fifth_batch)
    with pytest.raises(KeyboardInterrupt):
        methods.neighbours(model, interrupted, layer="pool1", k=3, batch_size=4)
    err = capsys.readouterr().err
    assert "2 of 5 shards are kept" in err and "run the same command again to resume" in err
    [store] = os.listdir(tmp_path / "a")
    assert sorted(f for f in os.listdir(tmp_path / "a" / store) if f.endswith(".npy")) == [
        "features-000000.npy", "features-000001.npy"]  # two shards of 8 images: four batches of 4
    forwards.clear()
    monkeypatch.setattr(scan, "layer_activations", lambda model, x, layer: forwards.append(len(x)) or original(
        model, x, layer))
    resumed = methods.neighbours(model, interrupted, layer="pool1", k=3, batch_size=4)
    assert sum(forwards) == 40 - 16  # only the missing shards
    whole = methods.neighbours(model, load_dataset(model, folder, cache=str(tmp_path / "b")), layer="pool1", k=3,
                               batch_size=4)
    for name in ("feature_index", "feature_distance", "pixel_index", "pixel_distance"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name), err_msg=name)
    for shard in range(5):
        name = f"features-{shard:06d}.npy"
        assert (tmp_path / "a" / store / name).read_bytes() == (tmp_path / "b" / store / name).read_bytes()


def test_float16_stores_half_the_bytes_and_keeps_the_neighbours(folder, tmp_path):
    model = tiny_vgg(channels=1, size=16)
    sizes = {}
    for precision in ("float32", "float16"):
        data = load_dataset(model, folder, cache=str(tmp_path / precision))
        result = methods.neighbours(model, data, layer="pool1", k=3, queries=[0, 1, 2], precision=precision)
        [store] = os.listdir(tmp_path / precision)
        sizes[precision] = sum(os.path.getsize(tmp_path / precision / store / f)
                               for f in os.listdir(tmp_path / precision / store) if f.endswith(".npy"))
        sizes[precision + " distance"] = result.feature_distance
        assert result.params["precision"] == precision
    assert 0.49 < sizes["float16"] / sizes["float32"] < 0.52
    np.testing.assert_allclose(sizes["float16 distance"], sizes["float32 distance"], rtol=2e-3)
    with pytest.raises(ValueError, match="precision must be one of float32, float16"):
        methods.neighbours(model, folder, layer="pool1", precision="float64")


def test_a_temporary_cache_leaves_nothing_behind(folder, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = tiny_vgg(channels=1, size=16)
    result = methods.neighbours(model, load_dataset(model, folder, cache=False), layer="fc3", k=2)
    import gc

    gc.collect()
    assert result.feature_index.shape == (5, 2) and os.listdir(tmp_path) == []


@pytest.mark.parametrize("rows, batches", [(1, [5, 1, 9]), (3, [4, 4, 4, 4]), (2, [20])])
def test_top_k_keeps_the_k_smallest_ties_to_the_lower_index(rows, batches):
    rng = np.random.default_rng(rows)
    keys = rng.integers(0, 6, (rows, sum(batches))).astype(float)  # many ties
    top = scan.TopK(5, rows)
    start = 0
    for size in batches:
        top.push(keys[:, start: start + size], np.arange(start, start + size))
        start += size
    expected = np.argsort(keys, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(top.index, expected)
    np.testing.assert_array_equal(top.keys, np.take_along_axis(keys, expected, 1))


def test_batch_size_comes_from_the_activation_budget():
    model = tiny_vgg(channels=1, size=16)
    images = np.zeros((3, 16, 16, 1), np.uint8)
    per_image = scan.activation_bytes(model, images, "pool1")
    assert per_image == 4 * 16 * 16 * (1 + 4 * 4) + 4 * 4 * 8 * 8  # input, conv/relu x 2, pool
    assert scan.batch_size_for(model, images, "pool1", memory=10 * per_image) == 10
    assert scan.batch_size_for(model, images, "pool1", memory=1) == 1
    assert scan.batch_size_for(model, images, "pool1") == scan.MAX_BATCH


@pytest.mark.slow
def test_a_two_worker_scan_writes_the_serial_shards_bit_for_bit(folder, tmp_path):
    pytest.importorskip("distributed")
    from methods.lib.cluster import THREAD_VARIABLES, connect, local_threads
    from minigrad import models

    env = {**os.environ, "MINIGRAD_BACKEND": "reference", "MINIGRAD_SCAN_CACHE": str(tmp_path / "serial"),
           **dict.fromkeys(THREAD_VARIABLES, str(local_threads(2)))}
    subprocess.run([sys.executable, "-m", "methods", "neighbours", "--dataset", folder, "--layer", "pool3",
                    "--batch-size", "4", "--out", str(tmp_path / "o1")], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    model = models.load("fashion-vgg")
    data = load_dataset(model, folder, cache=str(tmp_path / "cluster"))
    with connect(workers=2) as client, scan.distributed(client, "fashion-vgg"):
        methods.neighbours(model, data, layer="pool3", batch_size=4)
    [store] = os.listdir(tmp_path / "serial")
    assert os.listdir(tmp_path / "cluster") == [store]  # same key: same model, files, batch and backend
    shards = sorted(f for f in os.listdir(tmp_path / "serial" / store) if f.endswith(".npy"))
    assert len(shards) == 1 + 40 // (4 * (scan.SHARD_IMAGES // 4))
    for name in shards:
        assert (tmp_path / "serial" / store / name).read_bytes() == (tmp_path / "cluster" / store / name).read_bytes()


MEMORY = textwrap.dedent("""
    import sys
    import numpy as np
    import minigrad
    from minigrad import models, nn
    import methods
    from methods.lib.datasets import load_dataset
    from methods.lib.features import layer_features
    from methods.neighbours import distances
    from benchmarks.env import peak_rss_mb

    minigrad.set_backend("reference")
    minigrad.manual_seed(0)
    model = models.as_model(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
                            input_shape=(3, 64, 64))
    data = load_dataset(model, sys.argv[1], cache=sys.argv[2])
    base = peak_rss_mb()
    if sys.argv[3] == "stream":
        methods.neighbours(model, data, layer="2", k=3, batch_size=16)
    else:  # what neighbours did before: every image, then every feature vector, in memory
        x = model.preprocessing.normalize(np.asarray(data.images))
        features = layer_features(model, x, "2")
        distances(features[:5], features)
    print(peak_rss_mb() - base)
""")

#: Growth of peak memory (MiB) a streamed scan of 2,000 64 x 64 images stays within: a batch of 16
#: images' activations (10 MiB, and the reference kernels' im2col), one shard of 256 feature rows
#: (16 MiB), one block of rows compared (16 MiB in float64, twice for the squares). Holding the
#: folder's features instead takes 2,000 x 64 KiB = 125 MiB, and twice that in float64.
BOUND_MIB = 80


@pytest.mark.slow
def test_peak_memory_of_a_folder_scan_does_not_grow_with_the_folder(tmp_path):
    pytest.importorskip("PIL")
    folder = make_folder(str(tmp_path / "images"), 2000, sizes=((48, 56), (72, 80)), suffix=".png")
    grown = {}
    for mode in ("stream", "eager"):
        result = subprocess.run([sys.executable, "-c", MEMORY, folder, str(tmp_path / "cache"), mode], cwd=ROOT,
                                capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, (mode, result.stdout, result.stderr[-3000:])
        grown[mode] = float(result.stdout.split()[-1])
    assert grown["stream"] < BOUND_MIB < grown["eager"], grown


def test_a_cache_folder_planted_as_a_link_is_refused(folder, tmp_path):
    import shutil

    model = tiny_vgg(channels=1, size=16)
    cache = tmp_path / "cache"
    methods.neighbours(model, load_dataset(model, folder, cache=str(cache)), layer="fc3", k=2)
    [store] = os.listdir(cache)
    shutil.rmtree(cache / store)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", cache / store)
    with pytest.raises(ValueError, match="is a symbolic link; refusing to write a scan cache through it"):
        methods.neighbours(model, load_dataset(model, folder, cache=str(cache)), layer="fc3", k=2)
    assert os.listdir(tmp_path / "elsewhere") == []


class CorrectAtZero:
    """A dataset-wide evaluation as a work (what a robustness curve does at each epsilon): per image,
    whether the model's top class is its label."""

    layer = "fc4"
    names = ("correct",)

    def key(self):
        return {"work": "correct"}

    def __call__(self, model, pixels, labels):
        return {"correct": scan.layer_activations(model, model.preprocessing.normalize(pixels), "fc4").argmax(1)
                == labels}


def test_a_work_gets_each_batch_with_its_labels(folder, tmp_path):
    model = tiny_vgg(channels=1, size=16, classes=2)
    data = load_dataset(model, folder, cache=str(tmp_path))
    store, = scan.scan(model, data, [CorrectAtZero()], batch_size=3)
    scores = scan.layer_activations(model, model.preprocessing.normalize(np.asarray(data.images)), "fc4")
    np.testing.assert_array_equal(store.array("correct"), scores.argmax(1) == data.labels)
