"""armor-ab dashboards: a Streamlit multipage app over the HTTP API (``armor-ab dashboard``)."""
