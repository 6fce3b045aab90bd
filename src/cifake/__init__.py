"""cifake: tell real photographs from AI-generated images, and stay right under attack."""

import os

# TensorFlow's C++ INFO and WARNING lines (oneDNN notices, CPU feature hints) would fill every stage's output;
# errors still show. Set before any module of the package imports TensorFlow; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
