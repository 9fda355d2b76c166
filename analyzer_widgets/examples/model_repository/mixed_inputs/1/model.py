"""Weighted sum of FP32 features by INT32 counts, and the INT64 total of the counts."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy()
            counts = pb_utils.get_input_tensor_by_name(request, "COUNTS").as_numpy()
            weighted = (features * counts).sum(axis=1, keepdims=True).astype(np.float32)
            total = counts.astype(np.int64).sum(axis=1, keepdims=True)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("WEIGHTED_SUM", weighted),
                        pb_utils.Tensor("TOTAL_COUNT", total),
                    ]
                )
            )
        return responses
