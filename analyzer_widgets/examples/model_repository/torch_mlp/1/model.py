"""8 layers of Linear(4096, 4096) with ReLU, in torch: on CUDA in fp16 when a GPU is
there, on the CPU in fp32 otherwise. Input and output are FP32 [4096]."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import torch

        params = json.loads(args["model_config"]).get("parameters", {})
        layers = int(params.get("layers", {}).get("string_value", "8"))
        width = int(params.get("width", {}).get("string_value", "4096"))
        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        if self.device.type == "cuda":
            # On the GPU the CPU only copies and converts the batch. With torch's default
            # intra-op pool (one thread per core) a batch of 8 or more rows is split over
            # every core and the pool's threads then spin between batches: on the 16-core
            # H200 host this stub burned 14-15 cores at batch 8 / concurrency 4 and up,
            # starving the server's and the clients' threads (docs/benchmarks.md).
            torch.set_num_threads(1)
        torch.manual_seed(0)
        blocks = []
        for _ in range(layers):
            # made on the device in its dtype: initializing 134M fp32 weights on the CPU and
            # copying them over takes seconds of the model's load time
            blocks += [torch.nn.Linear(width, width, device=self.device, dtype=self.dtype), torch.nn.ReLU()]
        self.net = torch.nn.Sequential(*blocks).eval()

    def execute(self, requests):
        torch = self.torch
        inputs = [pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() for r in requests]
        sizes = [x.shape[0] for x in inputs]
        with torch.inference_mode():
            x = torch.from_numpy(np.concatenate(inputs, axis=0)).to(self.device, self.dtype)
            y = self.net(x).float().cpu().numpy()
        responses = []
        for part in np.split(y, np.cumsum(sizes)[:-1]):
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", part)]))
        return responses
