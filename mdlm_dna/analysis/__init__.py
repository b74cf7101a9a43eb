"""Per-position questions to a trained model: what it predicts at each base, what a change would do.

    from mdlm_dna import DiffusionLM
    from mdlm_dna.analysis import probs, ism, dependency_map, variant_effects
    m = DiffusionLM.from_pretrained("ecoli")
    p = probs(m, ["ACGT..."], strands="both")      # [N, L, 4]: p(base at i | every other base)
    x = ism(m, "ACGT...")                          # [L, 4] llr of each substitution
    d = dependency_map(m, "ACGT...")               # [L, L] how much a change at j moves the prediction at i
    v = variant_effects(m, "variants.vcf.gz", fasta="genome.fa")   # DataFrame, one row per ALT allele

``DiffusionLM.probs`` / ``ism`` / ``dependency_map`` / ``variant_effects`` are the same calls as methods.
Modules: :mod:`.probs` (masked-site conditionals, the one forward pass everything else uses), :mod:`.ism`,
:mod:`.dependency`, :mod:`.variants` (VCF / table in, scores out), :mod:`.vcf` (reading and writing VCF),
:mod:`.tracks` (bigWig / bedGraph), :mod:`.plots` (logos and heatmaps).
"""

from mdlm_dna.analysis.dependency import dependency_map
from mdlm_dna.analysis.ism import ism
from mdlm_dna.analysis.probs import probs, site_log_probs
from mdlm_dna.analysis.tracks import track
from mdlm_dna.analysis.variants import variant_effects
from mdlm_dna.analysis.vcf import read_variants, write_vcf

__all__ = ["dependency_map", "ism", "probs", "read_variants", "site_log_probs", "track", "variant_effects",
           "write_vcf"]
