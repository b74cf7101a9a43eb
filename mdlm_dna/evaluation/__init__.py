"""How good a model or a set of sequences is: bits/base and sequence-quality metrics, the order-k Markov chains
every DNA model has to beat, independent judges of designed sequences, and common random numbers for paired
scores."""
