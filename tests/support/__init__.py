"""Test and benchmark helpers (never installed): test PKIs and edXML, the signxml reference verifier."""
