"""Facts about the image backbones that need no TensorFlow: their published ImageNet files,
input limits and last blocks. Validating a config and planning the DAG read them here, at the cost of
no TensorFlow import; `genreflow.models` adds the Keras constructors to the same facts.

URLs, file names and md5 hashes are those `keras.applications` uses for
`weights="imagenet", include_top=False` (tests/test_models.py checks them against Keras'
sources), so a file that matches is byte-identical to what Keras itself would download.
"""

from __future__ import annotations

from dataclasses import dataclass

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ImageBackbone:
    name: str
    min_size: int
    weights_file: str
    weights_url: str
    weights_md5: str
    # Size of the last block in layers (model.layers, input layer included in the total),
    # i.e. the study's fine-tuning unit; `last_block_after` names the layer that closes the
    # previous block so that the count can be checked against Keras.
    last_block_layers: int
    last_block_after: str


IMAGE_BACKBONES: dict[str, ImageBackbone] = {
    spec.name: spec
    for spec in (
        ImageBackbone(
            name="efficientnetb0",
            min_size=32,
            weights_file="efficientnetb0_notop.h5",
            weights_url="https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
            weights_md5="50bc09e76180e00e4465e1a485ddc09d",
            last_block_layers=16,  # block7a + top conv/bn/activation
            last_block_after="block6d_add",
        ),
        ImageBackbone(
            name="inceptionv3",
            min_size=75,
            weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_url=_KERAS_APPS
            + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_md5="bcbd6486424b2319ff4ef7d526e38f63",
            last_block_layers=31,  # the last mixed block (mixed10), as in the study
            last_block_after="mixed9",
        ),
        ImageBackbone(
            name="resnet50",
            min_size=32,
            weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_url=_KERAS_APPS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_md5="4d473c1dd8becc155b73f8504c6f6626",
            last_block_layers=32,  # stage conv5 (three bottleneck blocks)
            last_block_after="conv4_block6_out",
        ),
        ImageBackbone(
            name="vgg16",
            min_size=32,
            weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_url=_KERAS_APPS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_md5="6d6bbae143d832006294945121d1f1fc",
            last_block_layers=4,  # block5: three convolutions and the pooling layer
            last_block_after="block4_pool",
        ),
    )
}
