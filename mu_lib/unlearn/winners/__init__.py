"""The winning recipes of the NeurIPS 2023 Machine Unlearning Challenge (family ``"competition"``).

Eight methods, named as in the Deep Unlearn benchmark where it ports them (Cadet et al. 2024,
``kgltop1..7``), ranked as the competition ranked its winners:

======  ==============  ===================================================================
rank    name            what it does
======  ==============  ===================================================================
1       ``fcs``         push forget outputs to uniform, then alternate a contrastive forget
                        round and a cross-entropy retain round (fanchuan)
2       ``msg``         re-initialise the 30 % conv weights with the smallest forget/retain
                        gradient, fine-tune with 10x smaller steps on the kept ones (Kookmin)
3       ``cfw``         add N(0, 0.6^2) noise to the (first) conv weights, fine-tune with
                        class weights (Seifeddine Achour)
4       ``prmq``        prune 99 % of the weights by magnitude, re-initialise them, fine-tune
                        with cross-entropy plus an entropy-matching term (Sebastian Oleszko)
5       ``ct``          transpose every conv kernel, fine-tune (toshi_k)
6       ``kde``         reset the first conv and the classifier, distil the original model on
                        the validation set, fine-tune with CE + distillation (DUTH "Euclid")
7       ``rni``         reset the classifier, inject noise into random layers, fine-tune
                        (sunkroos)
8       ``reinit_mse``  re-initialise random layers, "remember" by matching the original
                        outputs on noisy retain images; never reads the forget set (Ahn et al.)
======  ==============  ===================================================================

The recipes were written for one hidden data set (faces, 10 imbalanced age classes, a
torchvision ResNet-18) and a hard time limit of about 20 % of retraining. Their defaults are the
write-ups' values, or Deep Unlearn's where the write-up is silent; every epoch-like field is
listed in the config's ``epoch_fields`` so that :meth:`UnlearnConfig.with_epoch_budget` scales
them together.

**Architecture vocabulary.** The recipes name layers of a torchvision ResNet-18 (``conv1``,
``fc``, ``bn``...). Here they are defined by module type so that every method runs on any model
of :mod:`mu_lib.models`:

* *conv layers*: every ``nn.Conv2d``, in registration order;
* *first conv*: the first conv layer (``small_cnn``: ``conv1``; ``resnet18``: the stem ``conv1``);
* *classifier* ("last fc"): the last ``nn.Linear`` in registration order (``fc`` in both);
* *weight layers*: every ``nn.Conv2d`` and ``nn.Linear`` (weight and bias together), i.e. the
  "layers" that methods choose at random; normalisation layers are never weight layers;
* *projection shortcut*: a 1x1 convolution (in ResNet-18 exactly ``layerK.0.downsample.0``).

Random draws (noise, re-initialisation, choices of layers) come from a CPU generator seeded
with the call's ``seed`` and are then moved to the device, so that they do not depend on it.

Each recipe is one file of this package, named after it (``fcs.py`` ... ``reinit_mse.py``); the
vocabulary above lives in the private ``mu_lib.unlearn._layers`` and the shared losses in
``mu_lib.unlearn._losses``, and both are re-exported here. The chapter *The competition's winning recipes*
(``book/competition-methods.ipynb``) explains them and compares them with retraining.

Example:
    >>> from mu_lib import unlearn
    >>> sorted(unlearn.available("competition"))
    ['cfw', 'ct', 'fcs', 'kde', 'msg', 'prmq', 'reinit_mse', 'rni']
    >>> unlearn.get("msg").config.init_rate
    0.3
"""

from __future__ import annotations

from mu_lib.unlearn._layers import (
                                    NORM_TYPES,
                                    classifier,
                                    conv_layers,
                                    first_conv,
                                    is_projection_shortcut,
                                    reset_layer_,
                                    weight_layers,
)
from mu_lib.unlearn._losses import contrastive_forget_loss, kl_distillation, kl_to_uniform, predictive_entropy

# One file per recipe, imported (and so registered) in the order of the leaderboard.
# isort: off
from mu_lib.unlearn.winners.fcs import FCSConfig, fcs
from mu_lib.unlearn.winners.msg import (MSGConfig, msg_gradients, small_gradient_masks, reinit_kaiming_,
                                        msg_lr_factor, msg)
from mu_lib.unlearn.winners.cfw import CFWConfig, perturb_conv_weights_, cfw_class_weights, cfw
from mu_lib.unlearn.winners.prmq import PRMQConfig, prune_and_reinit_, prmq
from mu_lib.unlearn.winners.ct import CTConfig, transpose_conv_kernels_, ct
from mu_lib.unlearn.winners.kde import KDEConfig, kde
from mu_lib.unlearn.winners.rni import RNIConfig, noise_round_, rni
from mu_lib.unlearn.winners.reinit_mse import ReinitMSEConfig, reinit_candidates, reinit_random_layers_, reinit_mse
# isort: on

__all__ = [
    "NORM_TYPES", "conv_layers", "weight_layers", "first_conv", "classifier", "is_projection_shortcut",
    "reset_layer_", "kl_to_uniform", "contrastive_forget_loss", "predictive_entropy", "kl_distillation",
    "FCSConfig", "fcs", "MSGConfig", "msg_gradients", "small_gradient_masks", "reinit_kaiming_", "msg_lr_factor",
    "msg", "CFWConfig", "perturb_conv_weights_", "cfw_class_weights", "cfw", "PRMQConfig", "prune_and_reinit_",
    "prmq", "CTConfig", "transpose_conv_kernels_", "ct", "KDEConfig", "kde", "RNIConfig", "noise_round_", "rni",
    "ReinitMSEConfig", "reinit_candidates", "reinit_random_layers_", "reinit_mse"
]
