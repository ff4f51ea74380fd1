"""Thin RPC handlers: protobuf → domain calls → protobuf; domain errors → status."""
