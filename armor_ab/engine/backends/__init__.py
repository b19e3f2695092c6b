"""Engine backends: the step protocol over exported graphs, once, and one module per runtime.

    base.py         GraphBackend (``StepBackend`` over graphs: KV buffers, fused-logit memo, shape checks)
    onnxruntime.py  OnnxRuntimeBackend, ort_session_options (onnxruntime is imported when a backend opens)
    tensorrt.py     TensorRTBackend, build_plan, require_tensorrt (tensorrt is imported only in there, on demand)
    torch_cuda.py   TorchCudaBackend: the model itself, static KV caches and compiled steps (CUDA graphs on a GPU)

The PyTorch backend is ``armor_ab.model.steps.TorchBackend``: it is the model's own reference implementation
(and the parity baseline), so it lives with the model, which never imports the engine.

Imports go one way: ``onnxruntime`` and ``tensorrt`` import ``base``; ``base`` imports neither, and nothing
here imports ``armor_ab.engine.loader`` (which picks a backend by name). Nothing heavy is imported here.
"""
