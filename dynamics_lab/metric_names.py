"""The metric names each measurement logs, declared once: the measurement (measure/<name>.py)
writes them under these names and the detectors read them by these names, so a renamed metric
cannot leave a detector reading a column nobody writes. Torch-free: phenomena import it without
torch.

One class per measurement, its attributes the full names (`Hessian.LAMBDA_MAX ==
"hessian/lambda_max"`); names with an index or a layer are functions of it.
"""

from __future__ import annotations


class Hessian:
    """measure/hessian.py: the top of the spectrum and its certificate, the stability threshold
    in force and the preconditioned sharpness, the trace and the spectral density."""

    PREFIX = "hessian"
    LAMBDA_MAX = "hessian/lambda_max"  # lambda_1
    MATVECS = "hessian/matvecs"
    CONVERGED = "hessian/converged"
    CERTIFIED = "hessian/certified"
    FALLBACK = "hessian/fallback"
    BATCHED = "hessian/batched"
    THRESHOLD = "hessian/threshold"
    PRECOND_LAMBDA_MAX = "hessian/precond_lambda_max"
    PRECOND_MATVECS = "hessian/precond_matvecs"
    PRECOND_CERTIFIED = "hessian/precond_certified"
    TRACE = "hessian/trace"
    TRACE_STDERR = "hessian/trace_stderr"
    DENSITY_NEGATIVE_MASS = "hessian/density_negative_mass"
    DENSITY_LAMBDA_MIN = "hessian/density_lambda_min"
    DENSITY_LAMBDA_MAX = "hessian/density_lambda_max"

    @staticmethod
    def eigenvalue(i: int) -> str:
        """lambda_i, i from 1."""
        return f"hessian/lambda_{i}"

    @staticmethod
    def residual(i: int) -> str:
        return f"hessian/residual_{i}"

    @staticmethod
    def bound(i: int) -> str:
        return f"hessian/bound_{i}"


class HessianRank:
    """measure/hessian_rank.py: the Hessian's numerical rank (exact or SLQ) on a probe batch."""

    PREFIX = "hessian_rank"
    RANK = "hessian_rank/rank"
    RANK_STDERR = "hessian_rank/rank_stderr"
    N_PARAMS = "hessian_rank/n_params"
    RANK_FRACTION = "hessian_rank/rank_fraction"
    EXACT = "hessian_rank/exact"
    LAMBDA_ABS_MAX = "hessian_rank/lambda_abs_max"
    SMALLEST_KEPT = "hessian_rank/smallest_kept"
    LARGEST_DROPPED = "hessian_rank/largest_dropped"
    OUTER_RANK = "hessian_rank/outer_rank"


class NTK:
    """measure/ntk.py: the empirical NTK's alignment with the targets and its motion."""

    PREFIX = "ntk"
    ALIGNMENT = "ntk/alignment"
    ALIGNMENT_SHUFFLED = "ntk/alignment_shuffled"
    ALIGNMENT_FULL_EST = "ntk/alignment_full_est"
    ALIGNMENT_FULL_EST_STDERR = "ntk/alignment_full_est_stderr"
    ALIGNMENT_FULL_EST_SHUFFLED = "ntk/alignment_full_est_shuffled"
    KERNEL_NORM = "ntk/kernel_norm"
    DISTANCE_INIT = "ntk/distance_init"
    VELOCITY = "ntk/velocity"
    PARAM_MOVEMENT = "ntk/param_movement"


class Features:
    """measure/features.py: weights and representations per layer, and the weight on the
    task's relevant input features."""

    PREFIX = "features"
    WEIGHT_NORM = "features/weight_norm"
    RELEVANT_MASS = "features/relevant_mass"
    RELEVANT_MASS_TOP10 = "features/relevant_mass_top10"

    @staticmethod
    def per_layer(quantity: str, layer: str) -> str:
        """weight_norm, weight_erank, weight_pr, erank, pr or cka_init of one layer."""
        return f"features/{quantity}/{layer}"

    @staticmethod
    def fourier(key: str) -> str:
        return f"features/fourier/{key}"


class Signal:
    """measure/signal_alignment.py: first-layer neurons' alignment with the signal directions."""

    PREFIX = "signal"
    ALIGNMENT = "signal/alignment"
    ALIGNMENT_MEAN = "signal/alignment_mean"
    ALIGNMENT_TOP10 = "signal/alignment_top10"
    SUBSPACE_FRACTION = "signal/subspace_fraction"
    RANDOM_LEVEL = "signal/random_level"
    NEURON_SCALE = "signal/neuron_scale"


class Modes:
    """measure/modes.py (and measure/embedding_spectrum.py's aligned modes): the strength of
    each teacher mode, and the end-to-end map's singular values."""

    PREFIX = "modes"
    STRENGTH = "modes/strength_"  # + the mode's index, from 0
    SINGULAR_VALUE = "modes/sv_"  # + the singular value's index, from 0

    @staticmethod
    def strength(i: int) -> str:
        return f"{Modes.STRENGTH}{i}"

    @staticmethod
    def singular_value(i: int) -> str:
        return f"{Modes.SINGULAR_VALUE}{i}"


class Embedding:
    """measure/embedding_spectrum.py: the eigenvalues of the embedding's cross-correlation."""

    PREFIX = "embedding"
    EIGENVALUE = "embedding/eig_"  # + the eigenvalue's index, from 0, largest first

    @staticmethod
    def eigenvalue(i: int) -> str:
        return f"{Embedding.EIGENVALUE}{i}"


class Sparsity:
    """measure/activation_sparsity.py: fractions of active, dead and distinct active units."""

    PREFIX = "sparsity"
    ACTIVE_FRACTION = "sparsity/active_fraction"
    DEAD_FRACTION = "sparsity/dead_fraction"

    @staticmethod
    def of(fraction: str, layer: str | None = None) -> str:
        """`sparsity/<fraction>` over every layer, or of one layer."""
        return f"sparsity/{fraction}/{layer}" if layer else f"sparsity/{fraction}"


class Fourier:
    """measure/fourier_progress.py: Nanda et al.'s progress measures on modular addition, during
    training and (FINAL) recomputed from the checkpoints with the final key frequencies."""

    PREFIX = "fourier"
    RUNNING = "fourier/"
    FINAL = "fourier/final_"
    RESTRICTED_LOSS = "fourier/restricted_loss"
    EXCLUDED_LOSS = "fourier/excluded_loss"
    KEY_LOGIT_SHARE = "fourier/key_logit_share"
    KEY_POWER = "fourier/key_power"
    FINAL_RESTRICTED_LOSS = "fourier/final_restricted_loss"
    FINAL_EXCLUDED_LOSS = "fourier/final_excluded_loss"

    @staticmethod
    def key_frequency(i: int, final: bool = False) -> str:
        return f"{Fourier.FINAL if final else Fourier.RUNNING}key_freq_{i}"


class Memory:
    """measure/memory_recall.py: an associative memory's population error and recall by rank."""

    PREFIX = "memory"
    POPULATION_ERROR = "memory/population_error"
    RECALL = "memory/recall_"  # + the rank range, `1-10`

    @staticmethod
    def recall(lo: int, hi: int) -> str:
        return f"{Memory.RECALL}{lo}-{hi}"

    @staticmethod
    def population_error_of(scheme: str) -> str:
        return f"{Memory.POPULATION_ERROR}_{scheme}"


class Kernel:
    """measure/kernel_baseline.py: the lazy (linearised at init) model's losses."""

    PREFIX = "kernel"
    LAZY_TEST_LOSS = "kernel/lazy_test_loss"
    LAZY_TRAIN_LOSS = "kernel/lazy_train_loss"
    LAZY_RANK = "kernel/lazy_rank"


class SecondOrder:
    """measure/second_order.py: the reduced variables of a model quadratic in its parameters."""

    PREFIX = "second_order"
    NTK_LAMBDA = "second_order/ntk_lambda"
    NTK_LAMBDA_2 = "second_order/ntk_lambda_2"
    NTK_LAMBDA_PREV_MODE = "second_order/ntk_lambda_prev_mode"
    ZETA = "second_order/zeta"
    A = "second_order/a"
    B = "second_order/b"
    LOSS = "second_order/loss"


class Gradients:
    """measure/gradients.py: the gradient's norm, its change and the noise scale."""

    PREFIX = "grad"
    NORM = "grad/norm"
    COSINE_PREV = "grad/cosine_prev"
    NOISE_SCALE = "grad/noise_scale"
    TRUE_NORM_SQ = "grad/true_norm_sq"
    TRACE_COV = "grad/trace_cov"

    @staticmethod
    def norm_of(parameter: str) -> str:
        return f"grad/norm/{parameter}"
