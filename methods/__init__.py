"""Backprop-to-image techniques on minigrad models.

``TECHNIQUES`` lists every technique of the lecture notes (../shared/seeds) with the paper
it follows; ``python -m methods`` prints it with what is implemented so far.
"""

TECHNIQUES = (
    ("filters", "First-layer filter and weight visualization", "Krizhevsky et al. 2012"),
    ("activations", "Feature maps of any layer", "Yosinski et al. 2015"),
    ("patches", "Maximally activating patches", "Girshick et al. 2014"),
    ("neighbours", "Nearest neighbours in feature space", "Krizhevsky et al. 2012"),
    ("tsne", "t-SNE of feature vectors", "van der Maaten & Hinton 2008"),
    ("occlusion", "Occlusion sensitivity maps", "Zeiler & Fergus 2014"),
    ("saliency", "Saliency maps and saliency-seeded GrabCut", "Simonyan et al. 2014"),
    ("deconvnet", "Deconvnet reconstructions", "Zeiler & Fergus 2014"),
    ("guided-backprop", "Guided backpropagation", "Springenberg et al. 2015"),
    ("class-model", "Class model visualization by gradient ascent", "Simonyan et al. 2014"),
    ("neuron-vis", "Regularized neuron visualization", "Yosinski et al. 2015"),
    ("inversion", "Feature inversion", "Mahendran & Vedaldi 2015"),
    ("deepdream", "DeepDream", "Mordvintsev et al. 2015"),
    ("texture", "Texture synthesis with Gram matrices", "Gatys et al. 2015"),
    ("style-transfer", "Neural style transfer", "Gatys et al. 2016"),
    ("adversarial", "Adversarial examples (L-BFGS, FGSM)", "Szegedy et al. 2014; Goodfellow et al. 2015"),
    ("fooling", "Fooling images", "Nguyen et al. 2015"),
    ("hog-inversion", "HOG inversion", "Vondrick et al. 2013"),
    ("deep-image-prior", "Deep Image Prior", "Ulyanov et al. 2018"),
    ("bagnet", "Bag-of-features and BagNet evidence maps", "Brendel & Bethge 2019"),
    ("embeddings", "Siamese / triplet embeddings", "Hadsell et al. 2006; Schroff et al. 2015"),
    ("universal-approximation", "Universal approximation with one hidden layer", "Cybenko 1989"),
)

from methods.deconvnet import deconvnet  # noqa: E402
from methods.guided_backprop import guided_backprop  # noqa: E402
from methods.saliency import saliency_map  # noqa: E402
from methods.occlusion import occlusion  # noqa: E402
