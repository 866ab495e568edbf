"""metalearn_edu: optimization-based meta-learning, built step by step.

The library the course's notebooks import. Its layers, from the bottom up (no import runs the
other way):

    tasks and data  ->  models  ->  inner loop  ->  algorithms  ->  training and evaluation
                    ->  plots, widgets and exercise checks  ->  notebooks

Importing the package is cheap: submodules are imported where they are used.
"""

__version__ = "0.1.0"
