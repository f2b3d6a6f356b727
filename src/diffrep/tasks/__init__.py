"""Students (torchvision ResNet-18/50, MobileNetV2), their feature taps and backbone files, and the
downstream tasks they are fine-tuned on (classification today; segmentation and landmarks later)."""
from diffrep.tasks.students import (STEMS, STUDENTS, build_student, default_tap, feature_channels, feature_shape,
                                    load_backbone, replace_head, save_backbone, student_features, valid_taps)

__all__ = ["STEMS", "STUDENTS", "build_student", "default_tap", "feature_channels", "feature_shape",
           "load_backbone", "replace_head", "save_backbone", "student_features", "valid_taps"]
