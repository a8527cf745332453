"""Lazy vs rich: its detector (registered as `lazy_rich`) and, on demand, its figures."""

from dynamics_lab.phenomena.lazy_rich.detector import LazyRich, LazyRichConfig, LazyRichVerdict

__all__ = ["LazyRich", "LazyRichConfig", "LazyRichVerdict"]
