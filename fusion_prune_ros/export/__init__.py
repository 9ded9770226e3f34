"""ONNX export of the detector's graphs, TensorRT engines, and variant manifests."""
