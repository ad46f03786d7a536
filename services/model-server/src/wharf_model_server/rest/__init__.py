"""The REST transport: one module per protocol feature (``v1``, ``v2``, ``repository``)
attached to one FastAPI app over the data plane, with the inference fast path in front."""
