"""Pre-trained DPMs as frozen teachers: loading, noise schedule, taps with early exit."""
from diffrep.teacher.model import INPUT_MODES, SHIPPED_TEACHER, Teacher, load_teacher

__all__ = ["INPUT_MODES", "SHIPPED_TEACHER", "Teacher", "load_teacher"]
