"""Mean-pools a variable-length sequence of 32-wide vectors into one vector."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            sequence = pb_utils.get_input_tensor_by_name(request, "SEQUENCE").as_numpy()
            pooled = sequence.mean(axis=1).astype(np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("POOLED", pooled)]))
        return responses
