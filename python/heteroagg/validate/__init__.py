"""Cross-checks of heteroagg against reference codes (abTEM)."""
