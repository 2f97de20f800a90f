"""xnas: neural-architecture search for efficient video networks."""
