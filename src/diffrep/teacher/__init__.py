"""Pre-trained DPMs as frozen teachers: loading every family, noise schedule, taps with early exit."""
from diffrep.teacher.families import load_teacher, teacher_from_config
from diffrep.teacher.model import INPUT_MODES, SHIPPED_TEACHER, Teacher

__all__ = ["INPUT_MODES", "SHIPPED_TEACHER", "Teacher", "load_teacher", "teacher_from_config"]
