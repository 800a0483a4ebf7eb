"""A trained model as an ONNX graph that answers exactly what ``POST /predict`` answers.

Clients that want to classify offline (onnxruntime, a browser, a phone) should not
have to know how this service scales pixels or normalises its outputs, so the
graph takes the same raw 0..255 pixel rows as ``/predict`` and returns the same
normalised probabilities: the input scaling and the final division are nodes of
the graph, not documentation. The arithmetic mirrors :func:`api.serving.predict`
and :func:`shared.mlp.predict_proba` in float32::

    pixels ─Mul(input_scale)─Gemm(w1,b1)─Sigmoid─Gemm(w2,b2)─Sigmoid─┬─Div─▶ probabilities
                                                                      └ReduceSum(axis 1)┘

Pure: weights in, bytes out; no file, Redis or HTTP access, so the route that
serves it and the tests call the same function.
"""

import math
import re
from typing import Final
from uuid import UUID

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.ml import mlp

OPSET: Final = 13
"""The oldest opset with ``ReduceSum``'s axes as an input (the form we use): the
lowest version we can declare, so the widest range of runtimes can load the file."""

IR_VERSION: Final = 7
"""The IR version that goes with opset 13. ``helper.make_model`` would stamp the
newest IR the installed ``onnx`` knows, which older runtimes refuse to load even
though nothing in the graph needs it."""

PRODUCER_NAME: Final = "mnist-service"
INPUT_NAME: Final = "pixels"
OUTPUT_NAME: Final = "probabilities"
BATCH_DIM: Final = "N"

_SHA256 = re.compile(r"[0-9a-f]{64}")


def to_onnx(
    weights: mlp.Weights,
    input_scale: float,
    *,
    model_id: UUID,
    sha256: str,
    test_accuracy: float | None,
) -> bytes:
    """The model as a serialized, checked ONNX ``ModelProto``.

    Input ``pixels``: float32 ``[N, 784]``, 0..255 as ``/predict`` takes them.
    Output ``probabilities``: float32 ``[N, 10]``, each row summing to 1.
    ``N`` is symbolic, so one file serves any batch size.

    ``metadata_props`` carry ``model_id``, ``sha256`` (of the ``.npz``, so a
    client can tell which registered model a file came from and that it is the
    one it asked for) and ``test_accuracy`` (``repr`` of the float, which reads
    back exactly; the key is left out when the accuracy is unknown rather than
    written as a placeholder a client might parse as a number).

    Raises ``ValueError`` for inconsistent weight shapes, a scale that is not a
    positive finite number or a malformed sha256: better to refuse here than to
    hand out a file that fails in someone else's runtime.
    """
    n_hidden, n_features = _check_shapes(weights)
    n_output = weights.w2.shape[0]
    if not (math.isfinite(input_scale) and input_scale > 0):
        raise ValueError(f"input_scale must be a positive finite number, not {input_scale!r}")
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 lowercase hex digits, not {sha256!r}")

    def constant(name: str, array: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(array, name=name)

    f32 = np.float32
    initializers = [
        # the same float32 product as api.serving.predict: float32(pixel) * float32(scale)
        constant("input_scale", np.array(input_scale, dtype=f32)),
        constant("w1", np.ascontiguousarray(weights.w1, dtype=f32)),
        constant("b1", np.ascontiguousarray(weights.b1, dtype=f32)),
        constant("w2", np.ascontiguousarray(weights.w2, dtype=f32)),
        constant("b2", np.ascontiguousarray(weights.b2, dtype=f32)),
        constant("sum_axes", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Mul", [INPUT_NAME, "input_scale"], ["x"], name="scale"),
        # w1 is (hidden, features) as in shared.mlp: x @ w1.T + b1 is Gemm with transB
        helper.make_node("Gemm", ["x", "w1", "b1"], ["z_hidden"], name="hidden", transB=1),
        helper.make_node("Sigmoid", ["z_hidden"], ["a_hidden"], name="hidden_sigmoid"),
        helper.make_node("Gemm", ["a_hidden", "w2", "b2"], ["z_out"], name="output", transB=1),
        helper.make_node("Sigmoid", ["z_out"], ["a_out"], name="output_sigmoid"),
        # the book's network has sigmoid outputs, not a softmax; /predict divides
        # them by their row sum, and so does the graph
        helper.make_node("ReduceSum", ["a_out", "sum_axes"], ["a_sum"], name="row_sum", keepdims=1),
        helper.make_node("Div", ["a_out", "a_sum"], [OUTPUT_NAME], name="normalise"),
    ]
    graph = helper.make_graph(
        nodes,
        "mnist_mlp",
        inputs=[
            helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, n_features])
        ],
        outputs=[
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, n_output])
        ],
        initializer=initializers,
        doc_string=(
            f"NeuralNetMLP (Raschka ch. 12), {n_features}-{n_hidden}-{n_output}, sigmoid "
            "units. Input: raw 0..255 pixels; output: sigmoid outputs normalised to sum 1, "
            "as POST /predict answers."
        ),
    )
    model = helper.make_model(
        graph,
        producer_name=PRODUCER_NAME,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
    )
    props = {"model_id": str(model_id), "sha256": sha256}
    if test_accuracy is not None:
        props["test_accuracy"] = repr(float(test_accuracy))
    helper.set_model_props(model, props)
    # full_check adds strict shape inference: a wrong dimension fails here, not in a client
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _check_shapes(weights: mlp.Weights) -> tuple[int, int]:
    """``(hidden, features)`` of weights laid out as :mod:`shared.mlp` documents."""
    w1, b1, w2, b2 = weights.arrays()
    if w1.ndim != 2 or w2.ndim != 2 or b1.ndim != 1 or b2.ndim != 1:
        raise ValueError("w1 and w2 must be matrices, b1 and b2 vectors")
    n_hidden, n_features = w1.shape
    if b1.shape != (n_hidden,) or w2.shape[1] != n_hidden or b2.shape != (w2.shape[0],):
        raise ValueError(
            f"inconsistent weight shapes: w1 {w1.shape}, b1 {b1.shape}, "
            f"w2 {w2.shape}, b2 {b2.shape}"
        )
    return n_hidden, n_features
