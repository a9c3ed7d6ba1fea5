"""Networks written in other formats: ONNX (onnx.py)."""
