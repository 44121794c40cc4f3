"""Backprop-to-image techniques on minigrad models.

Every technique is a function registered with its options (``methods.lib.options``): call it on
a model (anything ``minigrad.models.load`` gives, or any ``nn.Module``) and a preprocessed batch,
a dataset or nothing (HOG inversion, Efros-Leung synthesis and Deep Image Prior take an image
alone, no network; colorization trains its own on the shipped photos), and read the arrays of the
result it returns::

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
from methods.class_model import class_model
from methods.visualize_unit import visualize_unit
from methods.inversion import invert
from methods.deepdream import deepdream
from methods.texture import texture_synthesis
from methods.style_transfer import style_transfer
from methods.hog import hog, hog_inversion, soft_hog
from methods.efros_leung import efros_leung
from methods.fgsm import fgsm
from methods.pgd import pgd
from methods.deepfool import deepfool
from methods.carlini_wagner import carlini_wagner
from methods.lbfgs_attack import lbfgs_attack
from methods.adversarial import adversarial_examples, logistic_example
from methods.fooling import fooling_image
from methods.robustness import robustness
from methods.lib.objectives import gram_matrix
from methods.lib.regularizers import total_variation

from methods.kmeans import kmeans
from methods.bag_of_words import bag_of_words
from methods.bagnet import bagnet_evidence
from methods.embeddings import embeddings
from methods.universal_approximation import universal_approximation
from methods.deep_image_prior import deep_image_prior, deep_image_prior_curves
from methods.colorization import colorization

__all__ = ["TECHNIQUES", "activations", "adversarial_examples", "bag_of_words", "bagnet_evidence",
           "carlini_wagner", "class_model", "colorization", "deconvnet", "deep_image_prior", "deep_image_prior_curves",
           "deepdream", "deepfool", "efros_leung", "embeddings", "fgsm", "filters", "fooling_image", "grad_cam",
           "gram_matrix", "guided_backprop", "hog", "hog_inversion", "integrated_gradients", "invert", "kmeans",
           "lbfgs_attack", "logistic_example", "maximally_activating_patches", "neighbours", "occlusion", "pgd",
           "robustness", "saliency", "smoothgrad", "soft_hog", "style_transfer", "texture_synthesis",
           "total_variation", "tsne", "tsne_embedding", "universal_approximation", "visualize_unit"]
