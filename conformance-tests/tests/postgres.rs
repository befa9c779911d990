//! The conformance suite on postgres (being written).
