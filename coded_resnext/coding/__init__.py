"""Coding schemes: the value type, the published schemes, the generator, and decoding (Eq. 7)."""

from coded_resnext.coding.decoding import Decoded, decode
from coded_resnext.coding.generator import generate_scheme
from coded_resnext.coding.paper import list_paper_schemes, paper_scheme, resolve_scheme
from coded_resnext.coding.scheme import CodingScheme, CodingSchemeError, pairwise_hamming

__all__ = [
    "CodingScheme",
    "CodingSchemeError",
    "Decoded",
    "decode",
    "generate_scheme",
    "list_paper_schemes",
    "pairwise_hamming",
    "paper_scheme",
    "resolve_scheme",
]
