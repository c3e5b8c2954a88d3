"""The audit layer: provenance, fairness, generative-model audits, transparency and scans."""
