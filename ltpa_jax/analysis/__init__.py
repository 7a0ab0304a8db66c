"""What the commands measure and report of runs: tables, FGSM, attention, speed, PyTorch
checkpoints. Above `training`; imports nothing of the commands."""
