"""The model zoo: one file a family, each model registered under a name.

>>> import cnnkit.models as zoo
>>> zoo.list()  # doctest: +NORMALIZE_WHITESPACE
['lenet5', 'mini_xception', 'resnet20', 'resnet32', 'resnet44', 'resnet56',
 'small_cnn', 'vgg_small', 'xception']
>>> model = zoo.get("resnet20", num_classes=10, in_channels=3)
>>> rebuilt = zoo.get(**model.config)       # same architecture, from the recorded config
>>> print(model.summary((3, 32, 32)))       # Keras-style table  # doctest: +SKIP
"""

from cnnkit.models.base import LayerFactory, Model, SequentialModel
from cnnkit.models.layers import GlobalMaxPool2d
from cnnkit.models.lenet import LeNet5, SmallCNN, lenet5, small_cnn
from cnnkit.models.mini_xception import MiniXception, mini_xception
from cnnkit.models.registry import get, list_models, register, takes_option
from cnnkit.models.resnet import (
    BasicBlock,
    CifarResNet,
    ZeroPadShortcut,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
)
from cnnkit.models.summary import summary, trace
from cnnkit.models.vgg import VGGSmall, vgg_small
from cnnkit.models.xception import (
    Xception,
    XceptionBlock,
    entry_flow,
    exit_flow,
    load_timm_state_dict,
    middle_flow,
    timm_key_map,
    xception,
)

list = list_models  # noqa: A001 - the public name is cnnkit.models.list, as the CLI expects

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "GlobalMaxPool2d",
    "LayerFactory",
    "LeNet5",
    "MiniXception",
    "Model",
    "SequentialModel",
    "SmallCNN",
    "VGGSmall",
    "Xception",
    "XceptionBlock",
    "ZeroPadShortcut",
    "entry_flow",
    "exit_flow",
    "get",
    "lenet5",
    "list",
    "list_models",
    "load_timm_state_dict",
    "middle_flow",
    "mini_xception",
    "register",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "small_cnn",
    "summary",
    "takes_option",
    "timm_key_map",
    "trace",
    "vgg_small",
    "xception",
]
