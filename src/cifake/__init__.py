"""cifake: tell real photographs from AI-generated images, and stay right under attack."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides the pipeline's own output;
# a user who wants it sets TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
