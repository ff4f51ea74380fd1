"""gRPC server interceptors: tracing (outermost), auth, rate limits, stream limits,
request checks, and the audit trail (innermost)."""
