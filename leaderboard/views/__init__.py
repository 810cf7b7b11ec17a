"""One module per group of tabs; each `render(...)` draws into the current Streamlit container."""
