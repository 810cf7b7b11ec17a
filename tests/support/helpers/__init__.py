"""Helpers shared by the tests: tiny models, local servers, data builders."""
