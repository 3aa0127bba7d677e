"""The ``implicit-inverse`` command, one module per subcommand.

- ``demo`` (:mod:`.demo`) trains the default deblurring model on faces and natural patches,
  compares it with the classical baselines on 20 held-out faces and writes figures, a results
  table and the fitted model;
- ``train`` (:mod:`.train`) fits a model on faces, patches or a folder of photos (random crops
  streamed from disk) and saves it;
- ``evaluate`` (:mod:`.evaluate`) measures a data set with a saved model's blur and noise and
  prints the comparison table;
- ``blur`` (:mod:`.blur`) blurs photos and adds noise, to make test measurements;
- ``restore`` (:mod:`.restore`) deblurs photos of any size with a saved model.

Model files are those of :meth:`ImplicitRegressor.save <implicit_inverse.ImplicitRegressor.save>`
(the command line stores how the model was made beside it). Bad arguments, files or data end
with one line on stderr and exit status 2, and nothing is written; a training run that diverges
ends with exit status 1.
"""

from ._common import CommandError, load_model, parse_kernel
from ._compare import compare_methods, format_table, markdown_table
from .main import build_parser, main

__all__ = ["CommandError", "build_parser", "compare_methods", "format_table", "load_model",
           "main", "markdown_table", "parse_kernel"]
