"""Names of the files mathtune writes, in a module without imports, so that light readers (analysis) share them."""

CHECKPOINT_FILE = "state.pt"  # a checkpoint folder's tensors (trainables/loop.py writes and reads them)
