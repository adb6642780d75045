"""Other frameworks' AlexNet weights -> this project's portable weights file (``alexnet2012``).

``convert_caffe`` (bvlc_alexnet's caffemodel and prototxt), ``convert_keras`` (Heuritech's
``alexnet_weights.h5``), ``convert_tf_npy`` (``bvlc_alexnet.npy``). Each brings its
tensors to Caffe's layout (``mapping.py``), builds the model from their shapes, and writes
a ``.safetensors`` file with the preprocessing the weights were trained with, which
``--weights`` and ``alexnet.load`` read back.
"""

from .caffe import convert_caffe
from .keras import convert_keras
from .mapping import ConvertError
from .tf_npy import convert_tf_npy

__all__ = ["ConvertError", "convert_caffe", "convert_keras", "convert_tf_npy"]
