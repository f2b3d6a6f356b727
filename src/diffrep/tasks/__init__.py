"""Students (torchvision ResNet-18/50, MobileNetV2), their feature taps and backbone files, and the
downstream tasks they are fine-tuned on: classification (classify.py), segmentation (segment.py) and landmarks
(landmarks.py), the dense ones through an FPN decoder (fpn.py) with joint augmentation (augment.py)."""
from diffrep.tasks.fpn import load_dense_net
from diffrep.tasks.students import (STEMS, STUDENTS, build_student, default_tap, feature_channels, feature_shape,
                                    load_backbone, replace_head, save_backbone, student_features, valid_taps)

__all__ = ["STEMS", "STUDENTS", "build_student", "default_tap", "feature_channels", "feature_shape",
           "load_backbone", "load_dense_net", "replace_head", "save_backbone", "student_features", "valid_taps"]
