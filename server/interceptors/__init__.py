"""gRPC server interceptors: tracing (outermost), auth, rate limits."""
