"""cifake: tell real photographs from AI-generated images, and stay right under attack."""

__version__ = "0.1.0"
