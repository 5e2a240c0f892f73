"""A tiny app: proves the dependency installed by the cached RUN step is importable."""
import six

print("hello from rbuild, six", six.__version__)
