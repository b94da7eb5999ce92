"""The dashboard (Streamlit: the only package that imports it) and the notebook widget (widget.py, which does not)."""
