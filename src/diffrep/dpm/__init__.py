"""Training and sampling a DDPM, for users who have no pre-trained one."""
