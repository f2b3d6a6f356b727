"""Every command's options (defaults) and their valid ranges, in plain Python: `diffrep COMMAND --help` and
option errors never import torch. The commands' modules take their DEFAULTS from here."""
