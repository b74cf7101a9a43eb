"""Trained models as files: finding and loading any ``ckpt=`` source, export folders and their model cards,
transformers remote code, the reference authors' checkpoint formats (MDLM, Caduceus), and a new run's
weights taken from a trained model (``pretrain init_from=``)."""
