"""readtax: DNA-language-model read classification at full data scale."""

__version__ = "0.1.0"
