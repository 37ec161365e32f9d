"""paperlib: a faithful, tested reproduction of Lee et al., "Reference-Based Sketch Image
Colorization using Augmented-Self Reference and Dense Semantic Correspondence", CVPR 2020."""
__version__ = "0.1.0"
