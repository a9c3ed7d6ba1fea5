"""Networks written in other formats: ONNX (onnx.py).  The formats' constants live here so the
command line can name them without importing the format's package (onnx takes ~50 ms)."""

OPSET = 13      # the ONNX opset export_onnx writes unless asked for a later one
