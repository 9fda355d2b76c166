"""A two-layer perceptron (256 -> 512 -> 64, ReLU) in numpy, with fixed random weights."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        rng = np.random.default_rng(0)
        self.w1 = rng.standard_normal((256, 512), dtype=np.float32) / 16.0
        self.b1 = np.zeros(512, dtype=np.float32)
        self.w2 = rng.standard_normal((512, 64), dtype=np.float32) / 22.6
        self.b2 = np.zeros(64, dtype=np.float32)

    def execute(self, requests):
        # Dynamic batching hands us several requests at once: run them as one matrix.
        inputs = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
        sizes = [x.shape[0] for x in inputs]
        x = np.concatenate(inputs, axis=0)
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        y = (hidden @ self.w2 + self.b2).astype(np.float32)
        responses = []
        for part in np.split(y, np.cumsum(sizes)[:-1]):
            out = pb_utils.Tensor("OUTPUT0", part)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
