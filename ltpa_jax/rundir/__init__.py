"""The run on disk: its workdir and lock, checkpoints, results, TensorBoard events, figures and
the recorder that writes an epoch's measurements."""
