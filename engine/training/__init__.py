"""Training: settings, loss, learning-rate schedule, the loop, a whole run (`trainer`), devices and torchrun."""
