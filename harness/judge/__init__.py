"""Pairwise LLM judging of generated reports (paper Figures 3 and 8).

Judges are opaque in peer harnesses (which model, which prompt, how position bias is handled,
what it cost), so every piece here is recorded: the template hash, the judge model and seed,
both A/B orders per item, every call's tokens, and a persistent cache that makes reruns free.
"""
