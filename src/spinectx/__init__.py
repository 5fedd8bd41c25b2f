"""spinectx: lumbar spine landmark localisation + disease classification experiment suite.

Pipeline, one module each: ``data`` (DICOM studies + annotations → samples) → ``codecs``
(keypoints ⇄ training targets) → ``models`` (backbone / neck / head) → ``losses`` → ``metrics``;
``lit`` wires them into a LightningModule and ``cli`` exposes the Hydra command-line apps.
"""

__version__ = "0.1.0"
