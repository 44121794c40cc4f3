"""The shared methods library: what techniques have in common lives here once, and techniques
import it (never each other's private helpers).

============  ==================================================================================
options       one declaration per technique: options, defaults, ranges, help; the registry
runner        running a registered technique from names alone (the CLI, the gallery, sweeps)
inputs        the model interface, batch and picture checks, class targets, host arrays, frozen
              weights
gradients     backprop-to-image of a class score or a unit under a ReLU rule, at every layer
attribution   the attribution result and its figures (saliency, Grad-CAM, SmoothGrad, ...)
attack        attacks in pixel units: the model's preprocessing undone, clipping, norms, results
optimize      the optimizing-the-image loop: step rules, jitter, snapshots, Ctrl-C, sizes
regularizers  L2 and alpha-norm decay, total variation, blur, clipping, octaves, pixel scales
objectives    Gram matrices, activations at any size, the papers' layers found in any model
features      a layer's activations for a batch or a dataset
receptive     receptive fields from the model's layer geometry; the smallest input that runs
datasets      the shipped sample datasets and image folders (read as they are used)
scan          dataset-wide scans in bounded memory: sharded stores cached on disk, top-k, resume
cluster       Dask (optional): local or remote clusters, a model loaded once per worker
training      minibatches, translations, class-stratified splits, the training loops with
              progress and Ctrl-C, single-threaded BLAS, the linear probe
images        uint8 scaling, grey to RGB, enlargement, resizing, grids with indices, contact sheets
figures       labelled figures: colour bars with real ranges, class names, legends, curves, bars
result        the Result base class: figures, native maps, JSON, save, plot
output        safe writing: folders checked first, atomic files, no links followed, valid JSON
progress      progress lines on stderr, with a rate and the time left
============  ==================================================================================
"""
