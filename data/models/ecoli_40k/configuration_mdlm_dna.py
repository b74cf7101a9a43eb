"""Configuration of an mdlm-dna model for transformers (remote code, written by mdlm-dna's save_pretrained).

Plain transformers: this file does not import mdlm_dna. The keys mdlm-dna itself reads from config.json
(``format``, ``run_config``, ...) pass through untouched.
"""

from transformers import PretrainedConfig


class MDLMDNAConfig(PretrainedConfig):
    """``backbone``: the network's settings (``name`` "dit", ``d_model``, ``n_layers``, ...); ``objective``: "mdlm"
    (a masked diffusion denoiser) or "ar" (a left-to-right model); ``excluded_ids``: tokens given zero mass
    (logit -inf); ``default_sigma``: the noise level a plain ``model(input_ids)`` passes (what the model was
    trained with when it ignores the noise level: 0); ``class_names``: a class-conditional model's classes."""

    model_type = "mdlm_dna"

    def __init__(self, backbone=None, objective="mdlm", excluded_ids=(), default_sigma=0.0, class_names=None,
                 vocab_size=10, mask_token_id=None, **kwargs):
        self.backbone = dict(backbone or {"name": "dit"})
        self.objective = objective
        self.excluded_ids = list(excluded_ids)
        self.default_sigma = float(default_sigma)
        self.class_names = list(class_names) if class_names else None
        self.vocab_size = int(vocab_size)
        self.mask_token_id = mask_token_id
        super().__init__(**kwargs)
