"""Running the dual encoder: Flax (jitted) or PyTorch, on the same weights.

Both take NumPy in (token ids and mask; NHWC pixels) and give L2-normalised float32 NumPy out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from koclip.checkpoint import Checkpoint
from koclip.errors import InvalidInputError, KoCLIPError
from koclip.models import convert
from koclip.models.config import KoCLIPConfig
from koclip.models.dual_encoder import DualEncoder, param_shapes

BACKENDS = ("auto", "flax", "torch", "onnx")  # "onnx": an ONNX export, koclip.models.onnx_backend
PRECISIONS = ("float32", "bfloat16")
# Below this many weights a model's queries are quick, while XLA's optimising passes make each compile
# much longer; such models are compiled at the lowest optimisation level instead.
SMALL_MODEL = 10_000_000
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TEXT_PARAMS = ("text_model", "text_projection")  # the text tower's top-level parameters


def compilation_cache_dir() -> Path | None:
    """Where compiled Flax programs are kept: KOCLIP_COMPILATION_CACHE (default ~/.cache/koclip/xla;
    "off" turns the cache off)."""
    value = os.environ.get("KOCLIP_COMPILATION_CACHE", "")
    if value.lower() in ("off", "0", "none"):
        return None
    return Path(value or Path.home() / ".cache" / "koclip" / "xla")


def use_compilation_cache() -> None:
    """Keep compiled programs on disk (compilation_cache_dir), unless the process already chose a
    cache: a restarted server then loads each input shape's program instead of compiling it. Called
    when the first Flax backend is made, not on import."""
    folder = compilation_cache_dir()
    if folder is None or jax.config.jax_compilation_cache_dir is not None:
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


class Backend(Protocol):
    """What runs a dual encoder: token ids and mask, or NHWC pixels, in; L2-normalised float32 out.
    FlaxBackend and TorchBackend are the two; KoCLIP holds one."""

    name: str
    compiles: bool  # whether each new input shape waits for a compile (KoCLIP.warm_up does them ahead)
    logit_scale: float

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Must return the L2-normalised float32 (batch, projection_dim) embeddings of (batch, length) integer token
        ids and their 0/1 attention mask."""
        ...

    def encode_image(self, pixels_nhwc: np.ndarray) -> np.ndarray:
        """Must return the L2-normalised float32 (batch, projection_dim) embeddings of float32 NHWC pixels, (batch,
        size, size, 3), as the model's image transform makes them."""
        ...

    def flax_params(self) -> dict:
        """Must return the weights as a Flax parameter tree of NumPy arrays, the layout `checkpoint.save` writes."""
        ...


class FlaxBackend:
    """Jitted Flax towers. The text tower's Dense kernels are held as (outputs, inputs), PyTorch's
    layout, and turned back inside the compiled program, where XLA folds the transpose into the
    product. A short text query reads every weight once and waits on memory; read as contiguous rows,
    the weights make it faster on CPU than in Flax's (inputs, outputs) layout. Image batches,
    which reuse each weight across thousands of rows, gain nothing, and keep Flax's layout
    (benchmarks/encode.py)."""

    name = "flax"
    compiles = True  # once per input shape: `KoCLIP.warm_up` does it ahead of the queries

    def __init__(self, config: KoCLIPConfig, params: dict):
        use_compilation_cache()
        self.params = params
        self.logit_scale = float(np.asarray(params["logit_scale"]))
        self.compilations = 0  # traces, i.e. compilations: one per new input shape
        module = DualEncoder(config)

        def text_fn(stored, input_ids, attention_mask):
            self.compilations += 1  # runs only while tracing
            params = _dense_kernels_transposed(stored)
            return module.apply({"params": params}, input_ids, attention_mask, method=DualEncoder.encode_text)

        def image_fn(stored, pixels):
            self.compilations += 1
            params = _dense_kernels_transposed(stored)
            return module.apply({"params": params}, pixels, method=DualEncoder.encode_image)

        options = FAST_COMPILE if weight_count(params) < SMALL_MODEL else None
        self._text = jax.jit(text_fn, compiler_options=options)
        self._image = jax.jit(image_fn, compiler_options=options)

    @property
    def params(self) -> dict:
        """The weights in Flax's layout (NumPy views of the held arrays)."""
        return _dense_kernels_transposed(jax.tree_util.tree_map(np.asarray, self._stored))

    @params.setter
    def params(self, params: dict) -> None:
        """Hold `params`, a Flax parameter tree, as JAX arrays with the text tower's Dense kernels transposed."""
        self._stored = jax.tree_util.tree_map(
            jnp.asarray, _dense_kernels_transposed(jax.tree_util.tree_map(np.asarray, params))
        )

    def flax_params(self) -> dict:
        """The weights in Flax's layout (`params`)."""
        return self.params

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """`Backend.encode_text`, jitted: the first call with a new (batch, length) shape waits for a compile."""
        return np.asarray(self._text(self._stored, input_ids, attention_mask), dtype=np.float32)

    def encode_image(self, pixels_nhwc: np.ndarray) -> np.ndarray:
        """`Backend.encode_image`, jitted: the first call with a new batch shape waits for a compile."""
        return np.asarray(self._image(self._stored, pixels_nhwc), dtype=np.float32)


def _dense_kernels_transposed(tree: dict) -> dict:
    """`tree` with the text tower's Dense kernels (2-D leaves named "kernel") transposed; its own inverse."""

    def flip(path, leaf):
        text = getattr(path[0], "key", None) in TEXT_PARAMS
        return leaf.T if text and getattr(path[-1], "key", None) == "kernel" and np.ndim(leaf) == 2 else leaf

    return jax.tree_util.tree_map_with_path(flip, tree)


class TorchBackend:
    """The PyTorch twin (`TorchDualEncoder`) holding a checkpoint's weights from `state`, a PyTorch state dict of
    arrays, run in `precision` (float32 or bfloat16). KoCLIPError when PyTorch or transformers is missing or barred
    by USE_TORCH=0, or when `state` lacks a weight."""

    name = "torch"
    compiles = False

    def __init__(self, config: KoCLIPConfig, state: dict[str, np.ndarray], precision: str = "float32"):
        try:
            import torch
            import transformers  # noqa: F401  (it builds the PyTorch towers)
        except ImportError as exc:
            raise KoCLIPError(
                f'backend="torch" needs PyTorch and transformers, and {exc.name} is not installed: '
                "pip install -r requirements-torch.txt, or pip install transformers==4.57.6 torch "
                "(the CPU build of torch: --index-url https://download.pytorch.org/whl/cpu)"
            ) from None

        if not torch_usable():
            raise KoCLIPError(
                'backend="torch" cannot run in this process: transformers was told not to use PyTorch (USE_TORCH=0, '
                "which must be unset before transformers is first imported); use the Flax backend, or start a "
                "process without it"
            )
        from transformers.modeling_utils import no_init_weights

        from koclip.models.torch_twin import TorchDualEncoder

        self.torch = torch
        # Every weight comes from `state` (a missing one is refused below): initialising them first would
        # be wasted work, and slow for a full-size model.
        with no_init_weights():
            self.model = TorchDualEncoder(config).eval()
        tensors = {k: torch.from_numpy(_writable_float32(v)) for k, v in state.items()}
        result = self.model.load_state_dict(tensors, strict=False)
        buffers = {name for name, _ in self.model.named_buffers()}
        missing = [k for k in result.missing_keys if k not in buffers]
        if missing:
            raise KoCLIPError(f"the checkpoint lacks {len(missing)} weights, e.g. {', '.join(missing[:3])}")
        self.logit_scale = float(self.model.logit_scale.detach())
        self.precision = precision
        self.dtype = getattr(torch, precision)
        self.model.to(self.dtype)

    def flax_params(self) -> dict:
        """The model's weights as a Flax parameter tree of float32 NumPy arrays."""
        state = {k: v.detach().float().numpy() for k, v in self.model.state_dict().items()}
        return convert.torch_to_flax(state, param_shapes(self.model.config))

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """`Backend.encode_text` on the PyTorch twin; the output is renormalised in float32."""
        with self.torch.inference_mode():
            out = self.model.encode_text(
                self.torch.from_numpy(input_ids.astype(np.int64)),
                self.torch.from_numpy(attention_mask.astype(np.int64)),
            )
        return self._unit(out)

    def encode_image(self, pixels_nhwc: np.ndarray) -> np.ndarray:
        """`Backend.encode_image` on the PyTorch twin (the pixels turned NCHW and cast to its precision); the output
        is renormalised in float32."""
        pixels = self.torch.from_numpy(np.ascontiguousarray(pixels_nhwc.transpose(0, 3, 1, 2)))
        with self.torch.inference_mode():
            out = self.model.encode_image(pixels.to(self.dtype))
        return self._unit(out)

    @staticmethod
    def _unit(out) -> np.ndarray:
        """float32 rows of length 1 (bfloat16 normalises only to about 1e-2)."""
        vectors = out.float().numpy()
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _writable_float32(array) -> np.ndarray:
    """`array` as float32 NumPy, copied only when it is not that already or is read-only (torch wants
    writable memory); load_state_dict then copies it into the model once."""
    array = np.asarray(array, dtype=np.float32)
    return array if array.flags.writeable else array.copy()


def weight_count(tree) -> int:
    """The number of scalars in the leaves of `tree` (a parameter tree or a state dict)."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(tree)))


def torch_usable() -> bool:
    """Whether PyTorch and transformers are installed and transformers may use PyTorch (USE_TORCH=0
    forbids it)."""
    try:
        from transformers.utils import is_torch_available
    except ImportError:
        return False
    return is_torch_available()


def check(backend: str, precision: str = "float32") -> None:
    """Refuse a backend or precision that does not exist, or a pairing that cannot run, before any work."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise InvalidInputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "float32" and backend == "flax":
        raise InvalidInputError(f'precision="{precision}" runs on the PyTorch twin only: pass backend="torch"')


def resolve(backend: str, weights: int, precision: str = "float32") -> str:
    """The backend to run, "flax" or "torch": "auto" is the PyTorch twin for full-size models (it
    compiles nothing per input shape, and on CPU it encodes image batches faster than XLA, though
    short texts slower: benchmarks/encode.py measures both) and for bfloat16, where PyTorch and
    transformers can run; else Flax, which small models keep (PyTorch's import costs more than all
    their queries)."""
    check(backend, precision)
    if backend == "auto":
        wants_torch = weights >= SMALL_MODEL or precision != "float32"
        backend = "torch" if wants_torch and torch_usable() else "flax"
        if precision != "float32" and backend != "torch":
            raise InvalidInputError(
                f'precision="{precision}" needs the PyTorch twin, which cannot run here: PyTorch '
                "or transformers is not installed (requirements-torch.txt), or USE_TORCH=0 "
                "forbids transformers to use it"
            )
    return backend


def _params_for_flax(ckpt: Checkpoint) -> dict:
    if ckpt.flax_params is not None:
        return ckpt.flax_params
    return convert.torch_to_flax(ckpt.torch_state, param_shapes(ckpt.config))


def _state_for_torch(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    if ckpt.torch_state is not None:
        return ckpt.torch_state
    return convert.flax_to_torch(ckpt.flax_params)


def create(backend: str, ckpt: Checkpoint, precision: str = "float32") -> FlaxBackend | TorchBackend:
    """The backend for `ckpt`. precision="bfloat16" (PyTorch only) halves the weights' memory and, on
    CPUs with bfloat16 units (AVX512-BF16, AMX), speeds both towers up; its embeddings stay close to
    float32's (benchmarks/encode.py measures both)."""
    backend = resolve(
        backend, weight_count(ckpt.flax_params if ckpt.flax_params is not None else ckpt.torch_state), precision
    )
    if backend == "flax":
        return FlaxBackend(ckpt.config, _params_for_flax(ckpt))
    return TorchBackend(ckpt.config, _state_for_torch(ckpt), precision)
