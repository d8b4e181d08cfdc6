"""The Streamlit dashboard: reader (MLflow -> pandas) -> analysis and figures (pure) -> widgets -> views."""
