"""vaa: Enhancing sentence-matching models with vulnerability via adversarial attack.

Zhang et al., COLING 2020. Stage one trains model A; an FGSM attack on A's word
embeddings measures each pair's vulnerability; stage two trains model B with the
projected vulnerability vector fed in along with the word embeddings.
"""

__version__ = "0.1.0"
