"""The generator suite: diffusion images and videos as the synthetic class.

Generators write dataset folders through :mod:`deepaudit.manifest`; they do not import
``detectors`` or ``audit``.
"""
