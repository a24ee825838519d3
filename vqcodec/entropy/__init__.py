"""Entropy coding of index grids: priors that give every code a probability, and the range coder.

- `counts`: count priors (`FrequencyPrior`, `ContextPrior`): integer tables fitted on training data.
- `adaptive`: coding under a context prior whose tables learn the image as it is coded (exact, from 6 stages).
- `context_net`: a small convolutional network in exact integer arithmetic that maps what the decoder
  already knows about a cell to one of a few hundred learned contexts.
- `schedule`: the coding order (checkerboard passes) that gives every cell spatial context while
  keeping each pass one vectorised range-coder call per context.
- `learned`: `LearnedPrior`, the count tables of those learned contexts, coded on that schedule.
- `fitting`: training the context network and counting its tables.
"""

from vqcodec.entropy.counts import ContextPrior, FrequencyPrior

__all__ = ["ContextPrior", "FrequencyPrior"]
