"""Backprop-to-image techniques on minigrad models.

Every technique is a function registered with its options (``methods.lib.options``): call it on
a model (anything ``minigrad.models.load`` gives, or any ``nn.Module``) and a preprocessed batch,
a dataset or nothing (HOG inversion and Efros-Leung synthesis take an image alone, no network),
and read the arrays of the result it returns::

    from minigrad import models
    import methods

    model = models.load("fashion-vgg")
    x = model.preprocess("shoe.png")
    result = methods.grad_cam(model, x)            # result.maps: (N, h, w) at relu3_1
    result.save("out/")                             # labelled figures, native maps, JSON

``python -m methods`` lists them and runs each one on any image and model; ``python -m methods
gallery`` renders them all. The shared library they are built from is :mod:`methods.lib`.
"""

# imported in the order the techniques are listed and rendered (the lecture notes' order)
from methods.lib.options import TECHNIQUES  # noqa: I001
from methods.filters import filters
from methods.activations import activations
from methods.patches import maximally_activating_patches
from methods.neighbours import neighbours
from methods.tsne import tsne, tsne_embedding
from methods.occlusion import occlusion
from methods.saliency import saliency
from methods.backprop import deconvnet, guided_backprop
from methods.gradcam import grad_cam
from methods.smoothgrad import smoothgrad
from methods.integrated_gradients import integrated_gradients
from methods.hog import hog, hog_inversion, soft_hog
from methods.efros_leung import efros_leung

__all__ = ["PLANNED", "TECHNIQUES", "activations", "deconvnet", "efros_leung", "filters", "grad_cam", "guided_backprop", "hog",
           "hog_inversion", "integrated_gradients", "maximally_activating_patches", "neighbours", "occlusion",
           "saliency", "smoothgrad", "soft_hog", "tsne", "tsne_embedding"]

#: The lecture notes' techniques still to come (name, title, paper); ``python -m methods`` lists them.
PLANNED = (
    ("class-model", "Class model visualization by gradient ascent", "Simonyan et al. 2014"),
    ("neuron-vis", "Regularized neuron visualization", "Yosinski et al. 2015"),
    ("inversion", "Feature inversion", "Mahendran & Vedaldi 2015"),
    ("deepdream", "DeepDream", "Mordvintsev et al. 2015"),
    ("texture", "Texture synthesis with Gram matrices", "Gatys et al. 2015"),
    ("style-transfer", "Neural style transfer", "Gatys et al. 2016"),
    ("adversarial", "Adversarial examples (L-BFGS, FGSM)", "Szegedy et al. 2014; Goodfellow et al. 2015"),
    ("fooling", "Fooling images", "Nguyen et al. 2015"),
    ("deep-image-prior", "Deep Image Prior", "Ulyanov et al. 2018"),
    ("bagnet", "Bag-of-features and BagNet evidence maps", "Brendel & Bethge 2019"),
    ("embeddings", "Siamese / triplet embeddings", "Hadsell et al. 2006; Schroff et al. 2015"),
    ("universal-approximation", "Universal approximation with one hidden layer", "Cybenko 1989"),
)
