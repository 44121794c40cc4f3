"""The explorer: look inside a network live in the browser.

Yosinski, Clune, Nguyen, Fuchs & Lipson, "Understanding Neural Networks Through Deep
Visualization", ICML Deep Learning workshop 2015 (arXiv:1506.06579), sec. 2: their Deep
Visualization Toolbox showed every channel of a layer responding to a live image, and for a
clicked unit its top images, its deconvnet map and its regularized visualization. This is that
page for minigrad's models, served from the standard library::

    python -m methods explore [--model NAME] [--port 8000] [--host 127.0.0.1]

Choose a model and an image (a shipped sample or an upload); see the top-5 classes and the
activation grid of any layer (hover a channel to enlarge it, click it to select the unit); for
the selected class or unit, saliency, deconvnet, guided backpropagation and Grad-CAM side by
side with colour bars; on request the occlusion map, the unit's top patches from the sample
dataset and its regularized visualization (``visualize-unit``, when registered), with progress;
every picture downloadable as the PNG and JSON files the command line writes; and the backprop
inspector (:mod:`methods.explore.inspector`), where the three ReLU rules part ways layer by layer.

:mod:`methods.explore.explorer` does the work (worker pools, cache, the registered techniques),
:mod:`methods.explore.server` answers HTTP, ``static/`` holds the page (HTML, CSS and JavaScript,
no build step, nothing fetched from elsewhere).
"""

import signal
import sys

__all__ = ["serve"]


def serve(model="fashion-vgg", host="127.0.0.1", port=8000, dataset_limit=None, verbose=False):
    """Load ``model``, serve the explorer on ``host:port`` until Ctrl-C, then remove its
    temporary folder. Prints the address. Returns 0."""
    from methods.explore.explorer import Explorer
    from methods.explore.server import make_server

    explorer = Explorer(model, dataset_limit=dataset_limit)
    try:
        print(f"loading {model} ...", file=sys.stderr, flush=True)
        explorer.model(model)
        server = make_server(explorer, host, port, verbose)
    except BaseException:
        explorer.close()
        raise
    print(f"minigrad explorer: {server.url}  (model {model}; Ctrl-C stops it)", flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a plain kill cleans up as Ctrl-C does
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        explorer.close()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
