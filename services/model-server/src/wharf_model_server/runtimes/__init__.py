"""Built-in runtimes: the only modules that import sklearn, xgboost, lightgbm or onnxruntime."""
