"""SGD finds then tunes features on XOR: the detector (registered as `xor`) and, on demand, the
figures and the fit of the search length against the input dimension."""

from dynamics_lab.phenomena.xor.detector import Xor, XorConfig, XorVerdict

__all__ = ["Xor", "XorConfig", "XorVerdict"]
